// Small wrappers around iproute2 and friends, used by tests to set up and independently check
// kernel state. Production code never shells out; tests use these tools as a second opinion.
import { execFile } from "node:child_process";
import { chmodSync, writeFileSync } from "node:fs";
import { promisify } from "node:util";

const execFileP = promisify(execFile);

export interface RunResult {
  stdout: string;
  stderr: string;
}

export async function run(cmd: string, args: readonly string[], timeoutMs = 30_000): Promise<RunResult> {
  try {
    const { stdout, stderr } = await execFileP(cmd, args, { timeout: timeoutMs, maxBuffer: 16 << 20 });
    return { stdout, stderr };
  } catch (e) {
    const err = e as Error & { stderr?: string; stdout?: string };
    throw new Error(`${cmd} ${args.join(" ")} failed: ${err.message}\n${err.stderr ?? ""}`, { cause: e });
  }
}

/** Runs a command with only the network namespace switched (bpffs stays visible, unlike `ip netns exec`). */
export function inNetns(netnsPath: string, cmd: string, args: readonly string[], timeoutMs?: number) {
  return run("nsenter", [`--net=${netnsPath}`, "--", cmd, ...args], timeoutMs);
}

export async function ipJson<T>(args: readonly string[], netnsName?: string): Promise<T> {
  const full = netnsName ? ["-n", netnsName, "-j", ...args] : ["-j", ...args];
  const { stdout } = await run("ip", full);
  return (stdout.trim() ? JSON.parse(stdout) : []) as T;
}

/** Writes an executable script (a stand-in plugin or tool a test puts on a runtime's path). */
export function writeScript(path: string, text: string): void {
  writeFileSync(path, text, { mode: 0o755 });
  chmodSync(path, 0o755); // the mode of writeFileSync is filtered by the umask
}
