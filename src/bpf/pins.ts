// bpffs pin directories. nkitd keeps everything that must outlive it (maps, links) below one root,
// so a restart finds its state and an uninstall removes it with one directory.
import { existsSync, mkdirSync, readdirSync, rmSync, statfsSync, statSync, unlinkSync } from "node:fs";
import { dirname, isAbsolute, join, normalize } from "node:path";
import { InvalidArgumentError, NotSupportedError } from "../errors.js";
import { BPF_FS_MAGIC } from "./constants.js";

const DEFAULT_BPFFS_ROOT = "/sys/fs/bpf/nkit";

/** Whether path (or its nearest existing ancestor) lives on a bpffs mount. */
function isOnBpffs(path: string): boolean {
  let p = normalize(path);
  while (!existsSync(p)) {
    const up = dirname(p);
    if (up === p) return false;
    p = up;
  }
  return statfsSync(p).type === BPF_FS_MAGIC;
}

/** mkdir -p below bpffs; refuses paths that are not on bpffs (pins there would fail with EPERM). */
export function ensureBpffsDir(path: string): void {
  if (!isAbsolute(path)) throw new InvalidArgumentError(`bpffs path must be absolute: ${path}`);
  if (!isOnBpffs(path)) {
    throw new NotSupportedError(
      `pinning BPF objects under ${path}`,
      "a bpffs mount there (e.g. `mount -t bpf bpf /sys/fs/bpf`, or run scripts/setup-host.sh)",
    );
  }
  mkdirSync(path, { recursive: true, mode: 0o700 });
}

/** Removes a pin (file) or a pin directory tree; false if nothing was there. */
export function removePin(path: string): boolean {
  if (!existsSync(path)) return false;
  if (statSync(path).isDirectory()) rmSync(path, { recursive: true, force: true });
  else unlinkSync(path);
  return true;
}

/** A directory of pins under bpffs, e.g. the agent's root or one endpoint's subdirectory. */
export class PinDir {
  readonly root: string;

  constructor(root: string = DEFAULT_BPFFS_ROOT) {
    if (!isAbsolute(root)) throw new InvalidArgumentError(`pin root must be absolute: ${root}`);
    this.root = normalize(root);
  }

  /** Creates the directory (and parents) if needed. */
  ensure(): this {
    ensureBpffsDir(this.root);
    return this;
  }

  /** Path of a pin inside this directory; names may contain "/" but must stay inside. */
  path(name: string): string {
    const p = normalize(join(this.root, name));
    if (isAbsolute(name) || !p.startsWith(`${this.root}/`)) {
      throw new InvalidArgumentError(`pin name must be relative and stay inside ${this.root}: ${name}`);
    }
    return p;
  }

  /** A subdirectory (not created until ensure()). */
  sub(name: string): PinDir {
    return new PinDir(this.path(name));
  }

  exists(name?: string): boolean {
    return existsSync(name === undefined ? this.root : this.path(name));
  }

  /** Names of the entries directly inside (empty if the directory does not exist). */
  list(): string[] {
    if (!existsSync(this.root)) return [];
    return readdirSync(this.root).sort();
  }

  /** Removes one pin or subdirectory; false if it was not there. */
  remove(name: string): boolean {
    return removePin(this.path(name));
  }

  /** Removes the directory with everything pinned below it. Maps and links die with their last pin/fd. */
  removeAll(): boolean {
    return removePin(this.root);
  }
}
