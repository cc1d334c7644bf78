// Host-side probes and cleanup primitives for the e2e harness: mounts, links, processes, unix sockets.
// Everything here acts only on objects the harness can prove are its own (paths under its temp dir,
// processes whose command line names its private socket, links it was told about).
import { execFile } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { promisify } from "node:util";

const execFileP = promisify(execFile);

export async function sh(cmd: string, args: readonly string[], timeoutMs = 30_000): Promise<string> {
  try {
    const { stdout } = await execFileP(cmd, args, { timeout: timeoutMs, maxBuffer: 16 << 20 });
    return stdout;
  } catch (e) {
    const err = e as Error & { stderr?: string };
    throw new Error(`${cmd} ${args.join(" ")} failed: ${err.message}\n${err.stderr ?? ""}`, { cause: e });
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls fn until it returns a value other than undefined, or throws after timeoutMs (with what). */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 30_000,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      const why = last instanceof Error ? `: ${last.message}` : "";
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`, { cause: last });
    }
    await sleep(intervalMs);
  }
}

function unescapeMountPath(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

/** Mount points at or below dir (from /proc/self/mountinfo), deepest first. */
export function mountsUnder(dir: string): string[] {
  const prefix = dir.endsWith("/") ? dir : `${dir}/`;
  const out: string[] = [];
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const field = line.split(" ")[4];
    if (!field) continue;
    const mp = unescapeMountPath(field);
    if (mp === dir || mp.startsWith(prefix)) out.push(mp);
  }
  return out.sort((a, b) => b.length - a.length);
}

/** Lazily unmounts everything at or below dir; returns what was mounted. */
export async function unmountAll(dir: string): Promise<string[]> {
  const found = mountsUnder(dir);
  for (let round = 0; round < 5; round++) {
    const left = mountsUnder(dir);
    if (left.length === 0) break;
    for (const mp of left) {
      try {
        await sh("umount", ["-l", mp]);
      } catch {
        // stacked mounts: the next round sees what is left
      }
    }
  }
  return found;
}

export async function linkNames(): Promise<string[]> {
  const out = await sh("ip", ["-j", "link", "show"]);
  return (JSON.parse(out) as { ifname: string }[]).map((l) => l.ifname);
}

export interface LinkInfo {
  ifname: string;
  master?: string;
  link_type?: string;
  linkinfo?: { info_kind?: string };
}

export async function links(): Promise<LinkInfo[]> {
  return JSON.parse(await sh("ip", ["-j", "-d", "link", "show"])) as LinkInfo[];
}

export async function deleteLinkIfPresent(name: string): Promise<boolean> {
  if (!existsSync(`/sys/class/net/${name}`)) return false;
  try {
    await sh("ip", ["link", "del", name]);
    return true;
  } catch {
    return existsSync(`/sys/class/net/${name}`) === false;
  }
}

/** True when a unix socket at path is in LISTEN state (no connection is made: NRI counts every connect). */
export function unixSocketListening(path: string): boolean {
  // Num RefCount Protocol Flags Type St Inode Path; Flags has __SO_ACCEPTCON (0x10000) when listening
  for (const line of readFileSync("/proc/net/unix", "utf8").split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length >= 8 && f[7] === path && (Number.parseInt(f[3] ?? "0", 16) & 0x10000) !== 0) return true;
  }
  return false;
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
  // a zombie is not alive for our purposes
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

export function cmdline(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8")
      .split("\0")
      .filter((s) => s.length > 0);
  } catch {
    return [];
  }
}

/** Processes whose argv contains `flag value` (e.g. shims: `-address <our socket>`). */
export function processesWithArg(flag: string, value: string): number[] {
  const pids: number[] = [];
  for (const ent of readdirSync("/proc")) {
    if (!/^\d+$/.test(ent)) continue;
    const pid = Number(ent);
    if (pid === process.pid) continue;
    const argv = cmdline(pid);
    const i = argv.indexOf(flag);
    if (i >= 0 && argv[i + 1] === value) pids.push(pid);
  }
  return pids;
}

export async function killAndWait(pid: number, timeoutMs = 10_000): Promise<void> {
  if (!processAlive(pid)) return;
  try {
    process.kill(pid, "SIGTERM");
  } catch {
    return;
  }
  const deadline = Date.now() + timeoutMs;
  while (processAlive(pid) && Date.now() < deadline) await sleep(50);
  if (processAlive(pid)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      return;
    }
    const hard = Date.now() + 5_000;
    while (processAlive(pid) && Date.now() < hard) await sleep(50);
  }
}
