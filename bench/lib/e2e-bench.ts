// What the benchmarks that run on the e2e harness (test/e2e/env: private containerds, real nkitd)
// share: their entry point's preparation, the checks before a run and how a run's results are kept.
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { get } from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { binariesFor, type Lane } from "../../test/e2e/env/lanes.js";
import { NKIT_CNI_BIN } from "../../test/e2e/env/nkit.js";
import { Cleanup, cleanupOnSignals } from "./cleanup.js";
import { ROOT } from "./paths.js";

/**
 * Run from the compiled copy in bench/dist, the harness loads proto/cri/api.proto relative to
 * itself: the entry point (its import.meta.url) copies the proto next to the compiled copy.
 */
export function copyHarnessProto(entryUrl: string): void {
  const here = dirname(fileURLToPath(entryUrl));
  if (!here.endsWith(join("bench", "dist", "bench"))) return;
  const dest = join(here, "..", "proto", "cri");
  mkdirSync(dest, { recursive: true });
  copyFileSync(join(ROOT, "proto", "cri", "api.proto"), join(dest, "api.proto"));
}

/** Why the benchmark `name` cannot run here (root, a built nkit-cni), or undefined. */
export function harnessProblem(name: string): string | undefined {
  if (process.getuid?.() !== 0) return `${name} needs root (containerd, runc, netns, BPF)`;
  if (!existsSync(NKIT_CNI_BIN)) return `${NKIT_CNI_BIN} is missing: run npm run build`;
  return undefined;
}

/** A whole-number option of a harness benchmark: `fallback` when absent, at least `min` (0 or 1). */
export function intOption(value: string | undefined, fallback: number, flag: string, min: 0 | 1): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) {
    throw new Error(`${flag}: expected a ${min === 0 ? "non-negative" : "positive"} integer, got ${value}`);
  }
  return n;
}

/**
 * A harness benchmark's start: its config from argv, or the exit code to return instead (0 after
 * printing the usage it was asked for, 2 for bad arguments, 1 when it cannot run here), logged.
 */
export function harnessConfig<C extends object>(
  name: string,
  argv: string[],
  usage: string,
  parse: (argv: string[]) => C | undefined,
  log: (m: string) => void,
): C | number {
  let cfg: C | undefined;
  try {
    cfg = parse(argv);
  } catch (e) {
    log(`${(e as Error).message}\n${usage}`);
    return 2;
  }
  if (!cfg) {
    log(usage);
    return 0;
  }
  const problem = harnessProblem(name);
  if (problem) {
    log(problem);
    return 1;
  }
  return cfg;
}

/** The lanes a `--lanes 1.7,2` value names; without one, 1.7 and 2 when containerd 2.x is built. */
export function lanesOf(value: string | undefined, log: (m: string) => void): Lane[] {
  if (value) {
    return value.split(",").map((l) => {
      const t = l.trim();
      if (t !== "1.7" && t !== "2") throw new Error(`--lanes: unknown lane ${t}`);
      return t;
    });
  }
  try {
    binariesFor("2");
    return ["1.7", "2"];
  } catch {
    log("containerd 2.x is not built (scripts/e2e/setup.sh --lane=2): lane 2 skipped");
    return ["1.7"];
  }
}

/**
 * Runs `runLane` for each lane in turn with one cleanup (also on signals), unwound at the end; a
 * lane that throws ends the run, and what the lanes before it measured is kept.
 */
export async function runLanes<R>(
  name: string,
  lanes: readonly Lane[],
  log: (m: string) => void,
  runLane: (lane: Lane, cleanup: Cleanup) => Promise<R>,
): Promise<{ results: R[]; failure?: string }> {
  const cleanup = new Cleanup();
  cleanupOnSignals(cleanup, log);
  const results: R[] = [];
  let failure: string | undefined;
  try {
    for (const lane of lanes) results.push(await runLane(lane, cleanup));
  } catch (e) {
    failure = (e as Error).stack ?? String(e);
    log(`${name} failed: ${failure}`);
  } finally {
    for (const err of await cleanup.run()) log(`cleanup: ${err}`);
  }
  return failure === undefined ? { results } : { results, failure };
}

/**
 * Writes <out>/<prefix>-<start time>.{json,md}, and <prefix>-latest.{json,md} too when the run is
 * complete. Returns the path without extension.
 */
export function keepRun(
  out: string,
  prefix: string,
  started: Date,
  report: unknown,
  markdown: string,
  complete: boolean,
): string {
  mkdirSync(out, { recursive: true });
  const stamp = started
    .toISOString()
    .replace(/[:.]/g, "-")
    .replace(/-\d{3}Z$/, "Z");
  const base = join(out, `${prefix}-${stamp}`);
  writeFileSync(`${base}.json`, `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(`${base}.md`, markdown);
  if (complete) {
    copyFileSync(`${base}.json`, join(out, `${prefix}-latest.json`));
    copyFileSync(`${base}.md`, join(out, `${prefix}-latest.md`));
  }
  return base;
}

/** The value of one series (its whole name and labels, as exposed) from nkitd's metrics listener; 0 when absent. */
export async function scrapeMetric(address: string, series: string): Promise<number> {
  return (await scrapeMetrics(address, [series]))[0] ?? 0;
}

/** The values of several series from one scrape of nkitd's metrics listener; 0 for an absent one. */
export async function scrapeMetrics(address: string, series: readonly string[]): Promise<number[]> {
  // A connection of its own each time: the benchmarks block the event loop in spawnSync for
  // seconds, long enough for the server to close a kept-alive one under fetch.
  const text = await new Promise<string>((resolve, reject) => {
    get(`http://${address}/metrics`, { agent: false }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        body += c;
      });
      res.on("end", () => resolve(body));
      res.on("error", reject);
    }).on("error", reject);
  });
  const lines = text.split("\n");
  return series.map((s) => {
    const line = lines.find((l) => l.startsWith(`${s} `));
    return line ? Number(line.slice(s.length + 1)) : 0;
  });
}
