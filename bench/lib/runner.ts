// What the datapath benchmark (run.ts) and the VM benchmark's guest (vm-guest.ts) do alike: the
// environment they record, the rotation of paths and tests per round, one measurement as a run
// record, and the final cleanup with its leak check.
import { execFileSync } from "node:child_process";
import { cpus, loadavg } from "node:os";
import type { Cleanup } from "./cleanup.js";
import { noisePct } from "./cpu.js";
import { measure, type Side, TESTS, type TestKind } from "./measure.js";
import type { RunRecord } from "./report.js";

/** The command's trimmed stdout, or "?" when it fails. */
export function tryCmd(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
  } catch {
    return "?";
  }
}

/** The machine and tool versions every result records (callers add their own entries). */
export function baseEnvironment(): {
  kernel: string;
  cpus: number;
  cpu: string;
  node: string;
  iperf3: string;
} {
  return {
    kernel: tryCmd("uname", ["-r"]),
    cpus: cpus().length,
    cpu: cpus()[0]?.model ?? "?",
    node: process.version,
    iperf3: tryCmd("iperf3", ["--version"]).split("\n")[0]?.split(" ")[1] ?? "?",
  };
}

export const loadavg1 = (): number => Number(loadavg()[0]?.toFixed(2));

/** xs rotated left by n. */
function rotate<T>(xs: readonly T[], n: number): T[] {
  const shift = n % xs.length;
  return [...xs.slice(shift), ...xs.slice(0, shift)];
}

/**
 * Every path x test once per round, interleaved: the order of the paths and of the tests rotates
 * every round (datapath-lab §5). Logs each round's path order as the round begins.
 */
export function* interleaved<P extends { info: { key: string } }>(
  rounds: number,
  paths: readonly P[],
  log: (m: string) => void,
): Generator<{ round: number; p: P; test: TestKind }> {
  for (let round = 1; round <= rounds; round++) {
    const order = rotate(paths, round - 1);
    const tests = rotate(TESTS, round - 1);
    log(`round ${round}/${rounds}: ${order.map((p) => p.info.key).join(" → ")}`);
    for (const p of order) for (const test of tests) yield { round, p, test };
  }
}

/** One measurement as a run record: its sample, noise and clean verdict, or the first line of its error. */
export async function measureRun(
  r: Pick<RunRecord, "round" | "path" | "test" | "attempt" | "idleWait">,
  p: { client: Side; server: Side },
  o: { seconds: number; port: number; cleanThresholdPct: number },
): Promise<RunRecord> {
  const rec: RunRecord = {
    round: r.round,
    path: r.path,
    test: r.test,
    attempt: r.attempt,
    startedAt: new Date().toISOString(),
    idleWait: r.idleWait,
    clean: false,
  };
  try {
    const m = await measure(r.test, p.client, p.server, o.seconds, o.port);
    rec.sample = m.sample;
    rec.noise = m.noise;
    rec.clean = noisePct(m.noise) <= o.cleanThresholdPct;
  } catch (e) {
    rec.error = e instanceof Error ? e.message.split("\n")[0]!.slice(0, 300) : String(e);
  }
  return rec;
}

/** Runs the cleanup, logging every error and adding it to the notes. */
export async function runCleanup(cleanup: Cleanup, log: (m: string) => void, notes: string[]): Promise<void> {
  for (const e of await cleanup.run()) {
    log(`cleanup: ${e}`);
    notes.push(`cleanup error: ${e}`);
  }
}

/** Network namespaces still there whose names start with prefix (there should be none after the cleanup). */
export function netnsLeftovers(prefix: string): string[] {
  return tryCmd("ip", ["netns", "list"])
    .split("\n")
    .filter((l) => l.startsWith(prefix));
}
