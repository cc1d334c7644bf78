// What the datapath benchmark (run.ts) and the VM benchmark's guest (vm-guest.ts) do alike: their
// flags' -h, the environment they record, the warm-up, the traffic runs (paths and tests rotating
// per round, each run after the machine went idle, with nkit's packet counters) as run records, and
// the final cleanup with its leak check.
import { execFileSync } from "node:child_process";
import { cpus, loadavg } from "node:os";
import { type ParseArgsConfig, parseArgs } from "node:util";
import type { Cleanup } from "./cleanup.js";
import { noisePct, waitForIdle } from "./cpu.js";
import { measure, type Side, TESTS, type TestKind } from "./measure.js";
import { diffCounters } from "./nkit.js";
import type { PathInfo, RunRecord } from "./report.js";

type Options = NonNullable<ParseArgsConfig["options"]>;
const HELP = { help: { type: "boolean", short: "h" } } as const;
type Values<O extends Options> = ReturnType<
  typeof parseArgs<{ args: string[]; options: O & typeof HELP }>
>["values"];

/** parseArgs over argv with the given options and -h/--help, which prints usage and exits. */
export function parseOptions<const O extends Options>(argv: string[], options: O, usage: string): Values<O> {
  const { values } = parseArgs({ args: argv, options: { ...options, ...HELP } });
  if ((values as { help?: boolean }).help) {
    process.stdout.write(usage);
    process.exit(0);
  }
  return values;
}

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
function* interleaved<P extends { info: { key: string } }>(
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

/** A path under measurement: what it is, its two ends and, on nkit's paths, the packets per reason
 * its endpoints have counted so far. */
export interface LivePath {
  info: PathInfo;
  client: Side;
  server: Side;
  counters?: () => Record<string, number>;
}

/** One 1 s TCP_RR per path, not recorded, so a broken topology fails fast instead of after minutes. */
export async function warmUp(
  live: readonly LivePath[],
  port: number,
  log: (m: string) => void,
): Promise<void> {
  log("warm-up (one 1 s TCP_RR per path, not recorded)");
  for (const [i, p] of live.entries()) {
    const m = await measure("rr", p.client, p.server, 1, port + i);
    log(`  ${p.info.tag} ${p.info.key}: TCP_RR ${Math.round(m.sample.rate ?? 0)}/s (warm-up)`);
  }
}

interface TrafficOptions {
  rounds: number;
  seconds: number;
  cleanThresholdPct: number;
  /** The longest wait for the machine to go idle before a run, ms. */
  idleWaitMs: number;
  /** How often an unclean run is repeated (within a budget of 25% extra runs); 0: never. */
  retries: number;
  /** The first run's port; every run takes the next. */
  basePort: number;
  log: (m: string) => void;
  /** A run's result as its log line shows it. */
  format: (test: TestKind, r: RunRecord) => string;
  /** Right before each measurement. */
  beforeRun?: () => void;
  /** Right after each measurement. */
  afterRun?: (r: RunRecord) => void;
}

/**
 * The traffic benchmark: every path x test once per round (interleaved), each run once the machine
 * went idle, recording the packets nkit's endpoints counted during the run; an unclean run is
 * repeated as o.retries allows.
 */
export async function trafficRuns(live: readonly LivePath[], o: TrafficOptions): Promise<RunRecord[]> {
  const runs: RunRecord[] = [];
  let port = o.basePort;
  const total = o.rounds * live.length * TESTS.length;
  const retryBudget = Math.floor(total * 0.25) * (o.retries > 0 ? 1 : 0);
  let retriesUsed = 0;
  let i = 0;
  // When the machine stays busy (e.g. someone's qemu), waiting does not help: after three waits in a
  // row that timed out, wait only briefly until one succeeds again.
  let missedIdle = 0;
  for (const { round, p, test } of interleaved(o.rounds, live, o.log)) {
    i++;
    for (let attempt = 1; ; attempt++) {
      const maxWait = missedIdle >= 3 ? Math.min(500, o.idleWaitMs) : o.idleWaitMs;
      const idleWait = await waitForIdle(o.cleanThresholdPct, maxWait);
      missedIdle = idleWait.idle ? 0 : missedIdle + 1;
      o.beforeRun?.();
      const before = p.counters?.();
      const rec = await measureRun({ round, path: p.info.key, test, attempt, idleWait }, p, {
        seconds: o.seconds,
        port: port++,
        cleanThresholdPct: o.cleanThresholdPct,
      });
      o.afterRun?.(rec);
      if (p.counters && before) rec.counters = diffCounters(before, p.counters());
      runs.push(rec);
      o.log(
        `  [${i}/${total}] ${p.info.tag} ${p.info.key} ${test}${attempt > 1 ? ` (retry ${attempt - 1})` : ""}: ${o.format(test, rec)}`,
      );
      const retry =
        !rec.clean && !rec.error && attempt <= o.retries && retriesUsed < retryBudget && missedIdle < 3;
      if (!retry) break;
      retriesUsed++;
    }
  }
  return runs;
}

/** One measurement as a run record: its sample, noise and clean verdict, or the first line of its error. */
async function measureRun(
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
