// Process helpers for benchmarks: run in a netns (nsenter keeps bpffs visible), pinned to a CPU
// with SCHED_FIFO so the noisy shared VM disturbs the measurement less (datapath-lab pitfall 20).
//
// Every child is tracked until it exits, so an interrupted run can kill exactly the processes it
// started (by pid, never by name). nsenter (net only), taskset and chrt all exec in place, so the
// tracked pid is the benchmark tool itself and its CPU time reaches our cutime/cstime when reaped.
import { type ChildProcess, spawn } from "node:child_process";

export interface Placement {
  netnsPath?: string;
  cpu?: number;
  /** A cgroup v2 dir the process joins first (the socket load-balancer's hooks see it). */
  cgroup?: string;
}

const live = new Set<ChildProcess>();

function track(child: ChildProcess): ChildProcess {
  live.add(child);
  child.once("exit", () => live.delete(child));
  child.once("error", () => live.delete(child));
  return child;
}

/** SIGKILLs every child this process started that is still running. */
export function killAllChildren(): number {
  let n = 0;
  for (const c of live) {
    if (c.exitCode === null && c.signalCode === null && c.pid !== undefined) {
      try {
        process.kill(c.pid, "SIGKILL");
        n++;
      } catch {
        // already gone
      }
    }
  }
  return n;
}

function wrap(p: Placement, cmd: string, args: readonly string[]): [string, string[]] {
  let argv = [cmd, ...args];
  if (p.cpu !== undefined) argv = ["taskset", "-c", String(p.cpu), "chrt", "-f", "10", ...argv];
  if (p.netnsPath) argv = ["nsenter", `--net=${p.netnsPath}`, "--", ...argv];
  // The shell joins the cgroup, then becomes the command (same pid, still tracked).
  if (p.cgroup) argv = ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', p.cgroup, ...argv];
  return [argv[0]!, argv.slice(1)];
}

/** Runs a command to completion and returns its stdout; rejects with stderr on failure or timeout. */
export function sh(
  cmd: string,
  args: readonly string[],
  p: Placement = {},
  timeoutMs = 120_000,
): Promise<string> {
  const [c, a] = wrap(p, cmd, args);
  return new Promise((resolve, reject) => {
    const child = track(spawn(c, a, { stdio: ["ignore", "pipe", "pipe"] }));
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on("data", (d: Buffer) => out.push(d));
    child.stderr?.on("data", (d: Buffer) => err.push(d));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.once("error", (e) => {
      clearTimeout(timer);
      reject(new Error(`${c} ${a.join(" ")}: ${e.message}`, { cause: e }));
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) {
        resolve(Buffer.concat(out).toString());
        return;
      }
      const why = signal ? `killed by ${signal}` : `exit code ${code}`;
      reject(new Error(`${c} ${a.join(" ")}: ${why}: ${Buffer.concat(err).toString().trim()}`));
    });
  });
}

/** Starts a long-running server and resolves once it printed `readyText` (or after a grace delay). */
export async function startServer(
  cmd: string,
  args: readonly string[],
  p: Placement,
  readyText?: string,
): Promise<ChildProcess> {
  const [c, a] = wrap(p, cmd, args);
  const child = track(spawn(c, a, { stdio: ["ignore", "pipe", "pipe"] }));
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => (readyText ? reject(new Error(`${cmd} did not become ready`)) : resolve()),
        readyText ? 5000 : 300,
      );
      child.once("error", (e) => {
        clearTimeout(timer);
        reject(e);
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`${cmd} exited early with ${code}: ${stderr.trim()}`));
      });
      if (readyText) {
        let seen = "";
        child.stdout?.on("data", (d: Buffer) => {
          seen += d.toString();
          if (seen.includes(readyText)) {
            clearTimeout(timer);
            resolve();
          }
        });
      }
    });
  } catch (e) {
    await stop(child);
    throw e;
  }
  child.removeAllListeners("exit");
  child.once("exit", () => live.delete(child));
  // Keep draining the pipes so a chatty server never blocks on a full pipe.
  child.stdout?.resume();
  return child;
}

/** SIGTERM, then SIGKILL after a grace period; resolves once the process has been reaped. */
export async function stop(child: ChildProcess, graceMs = 2000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const done = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await done;
  clearTimeout(timer);
}
