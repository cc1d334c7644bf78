// Process helpers for benchmarks: run in a netns (nsenter keeps bpffs visible), pinned to a CPU
// with SCHED_FIFO so the noisy shared VM disturbs the measurement less (datapath-lab pitfall 20).
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { promisify } from "node:util";

const execFileP = promisify(execFile);

export interface Placement {
  netnsPath?: string;
  cpu?: number;
}

function wrap(p: Placement, cmd: string, args: readonly string[]): [string, string[]] {
  let argv = [cmd, ...args];
  if (p.cpu !== undefined) argv = ["taskset", "-c", String(p.cpu), "chrt", "-f", "10", ...argv];
  if (p.netnsPath) argv = ["nsenter", `--net=${p.netnsPath}`, "--", ...argv];
  return [argv[0]!, argv.slice(1)];
}

export async function sh(cmd: string, args: readonly string[], p: Placement = {}, timeoutMs = 120_000) {
  const [c, a] = wrap(p, cmd, args);
  try {
    const { stdout } = await execFileP(c, a, { timeout: timeoutMs, maxBuffer: 64 << 20 });
    return stdout;
  } catch (e) {
    const err = e as Error & { stderr?: string };
    throw new Error(`${c} ${a.join(" ")}: ${err.message} ${err.stderr ?? ""}`, { cause: e });
  }
}

/** Starts a long-running server and resolves once it printed `readyText` (or after a grace delay). */
export async function startServer(
  cmd: string,
  args: readonly string[],
  p: Placement,
  readyText?: string,
): Promise<ChildProcess> {
  const [c, a] = wrap(p, cmd, args);
  const child = spawn(c, a, { stdio: ["ignore", "pipe", "pipe"] });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => (readyText ? reject(new Error(`${cmd} did not become ready`)) : resolve()),
      2000,
    );
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`${cmd} exited early with ${code}`)));
    if (readyText) {
      child.stdout?.on("data", (d: Buffer) => {
        if (d.toString().includes(readyText)) {
          clearTimeout(timer);
          resolve();
        }
      });
    } else {
      setTimeout(() => {
        clearTimeout(timer);
        resolve();
      }, 300);
    }
  });
  child.removeAllListeners("exit");
  return child;
}

export async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const done = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  await done;
}
