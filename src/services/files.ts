// The watched directory of service files (paths.services): one YAML service per file, applied when
// a file appears, changes or goes away. A file that does not parse is logged with its path and key
// and leaves the others alone; a file that was good and turns bad keeps its last good service, so a
// half-saved edit never takes a running service down.
import { type FSWatcher, readdirSync, readFileSync, statSync, watch } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import type { Logger } from "../log.js";
import type { ServiceManager } from "./manager.js";
import { parseServiceSpec, type ServiceSpec, ServiceSpecError } from "./spec.js";

const SERVICE_FILE_RE = /^[^.].*\.(ya?ml|json)$/;

interface ServiceFileError {
  file: string;
  /** The key that is wrong ("" when the file is not YAML at all). */
  key: string;
  message: string;
}

interface ServiceFilesOptions {
  dir: string;
  manager: ServiceManager;
  log?: Logger;
  /** Full rescan period, a safety net for changes inotify misses (bind mounts, NFS). */
  rescanMs?: number;
  /** Wait this long after a change before reading, so editors finish writing. */
  settleMs?: number;
}

export class ServiceFiles {
  /** file → mtime+size of the version last read, so unchanged files are not re-parsed. */
  private readonly seen = new Map<string, string>();
  private readonly errors = new Map<string, ServiceFileError>();
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private settle: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly opts: ServiceFilesOptions) {}

  /** Reads the directory now, then follows it. */
  start(): void {
    this.scan(); // also starts following the directory when it exists
    this.timer = setInterval(() => this.scan(), this.opts.rescanMs ?? 10_000);
    this.timer.unref();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    if (this.settle) clearTimeout(this.settle);
    this.watcher?.close();
    this.watcher = undefined;
  }

  /** Files that failed to parse, with the reason (their last good service, if any, stays). */
  failures(): ServiceFileError[] {
    return [...this.errors.values()];
  }

  /** Applies every change since the last scan; returns the files that failed. */
  scan(): ServiceFileError[] {
    let names: string[];
    try {
      names = readdirSync(this.opts.dir).filter((n) => SERVICE_FILE_RE.test(n));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") {
        this.opts.log?.warn({ dir: this.opts.dir, err: e }, "cannot read the service files directory");
      }
      names = [];
    }
    const present = new Set(names.map((n) => join(this.opts.dir, n)));
    for (const file of [...this.seen.keys()]) {
      if (present.has(file)) continue;
      this.seen.delete(file);
      this.errors.delete(file);
      this.opts.manager.replaceSource("file", [], file);
      this.opts.log?.info({ file }, "service file removed");
    }
    for (const file of present) this.read(file);
    if (!this.watcher && !this.closed) this.follow();
    return this.failures();
  }

  private read(file: string): void {
    let version: string;
    try {
      const st = statSync(file);
      if (!st.isFile()) return;
      version = `${st.mtimeMs}:${st.size}:${st.ino}`;
    } catch {
      return; // gone between readdir and stat: the next scan removes it
    }
    if (this.seen.get(file) === version) return;
    this.seen.set(file, version);
    let spec: ServiceSpec;
    try {
      const raw: unknown = parse(readFileSync(file, "utf8"));
      spec = parseServiceSpec(raw, file);
    } catch (e) {
      const err: ServiceFileError =
        e instanceof ServiceSpecError
          ? { file, key: e.key.slice(file.length + 1), message: e.message }
          : { file, key: "", message: `${file}: not valid YAML: ${(e as Error).message}` };
      this.errors.set(file, err);
      this.opts.log?.error({ file, key: err.key }, `service file refused: ${err.message}`);
      return;
    }
    const failed = this.opts.manager.replaceSource("file", [spec], file);
    const conflict = failed[0];
    if (conflict) {
      this.errors.set(file, { file, key: "", message: `${file}: ${conflict.error.message}` });
      this.opts.log?.error({ file, service: spec.name }, `service file refused: ${conflict.error.message}`);
      return;
    }
    this.errors.delete(file);
    this.opts.log?.info({ file, service: spec.name }, "service file applied");
  }

  private follow(): void {
    try {
      this.watcher = watch(this.opts.dir, () => {
        if (this.settle) clearTimeout(this.settle);
        this.settle = setTimeout(() => this.scan(), this.opts.settleMs ?? 100);
        this.settle.unref();
      });
      this.watcher.on("error", () => {
        this.watcher?.close();
        this.watcher = undefined;
      });
    } catch {
      // Absent directory: the periodic rescan notices when it appears.
      this.watcher = undefined;
    }
  }
}
