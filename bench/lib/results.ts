// What the side-by-side benchmarks (services, masquerade) share: their flags, their frame (a name
// prefix, the cleanup), their targets table and how they write results (a timestamped JSON +
// Markdown pair and a *-latest copy in bench/results).
import { randomBytes } from "node:crypto";
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Cleanup, cleanupOnSignals } from "./cleanup.js";
import { RESULTS_DIR } from "./paths.js";

interface RunConfig {
  rounds: number;
  seconds: number;
  quick: boolean;
  out: string;
}

/** --quick (1 round × 1 s), --rounds N, --seconds S, --out DIR; default 5 rounds × 4 s: with
 * three, one noisy round moved a median by more than the effects these benchmarks look for. */
function parseRunArgs(argv: readonly string[]): RunConfig {
  const quick = argv.includes("--quick");
  const cfg: RunConfig = { rounds: quick ? 1 : 5, seconds: quick ? 1 : 4, quick, out: RESULTS_DIR };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1];
    if (argv[i] === "--rounds" && v) cfg.rounds = Number(v);
    if (argv[i] === "--seconds" && v) cfg.seconds = Number(v);
    if (argv[i] === "--out" && v) cfg.out = v;
  }
  return cfg;
}

/** What a side-by-side benchmark's run gets: its flags, start time, name prefix and cleanup. */
interface BenchRun {
  cfg: RunConfig;
  started: Date;
  /** Prefix of every name the run creates (netns, devices, pins), unique per run. */
  prefix: string;
  cleanup: Cleanup;
}

/**
 * Runs side-by-side benchmark `name` (`npm run bench:<name> -- argv`): the cleanup runs at the end and
 * on a signal; the result and Markdown that `run` returns are written to bench/results and printed.
 */
export async function sideBySide(
  name: string,
  argv: readonly string[],
  log: (m: string) => void,
  run: (r: BenchRun) => Promise<{ result: unknown; md: string }>,
): Promise<number> {
  const cfg = parseRunArgs(argv);
  const started = new Date();
  const prefix = `nkb-${randomBytes(2).toString("hex")}`;
  const cleanup = new Cleanup();
  cleanupOnSignals(cleanup, log);
  try {
    const { result, md } = await run({ cfg, started, prefix, cleanup });
    writeResults(cfg, name, started, result, md);
    process.stdout.write(`${md}\n`);
    return 0;
  } finally {
    for (const e of await cleanup.run()) log(`cleanup: ${e}`);
  }
}

/** A goal of a side-by-side benchmark and the value measured against it. */
interface Target {
  name: string;
  value: number;
  /** The goal, e.g. "≥ 1.0". */
  target: string;
  /** Absent: a figure shown beside the targets to read them by, not a target. */
  pass?: boolean;
}

/** The Markdown table of the targets, PASS or MISS each. */
export function targetTable(targets: readonly Target[]): string[] {
  return [
    "| target | value | goal | |",
    "|---|---:|---|---|",
    ...targets.map(
      (t) =>
        `| ${t.name} | ${t.value} | ${t.target} | ${t.pass === undefined ? "" : t.pass ? "PASS" : "MISS"} |`,
    ),
  ];
}

/** Writes <name>-<time>[-quick].{json,md} and copies them to <name>[-quick]-latest.{json,md}. */
function writeResults(cfg: RunConfig, name: string, started: Date, result: unknown, md: string): void {
  mkdirSync(cfg.out, { recursive: true });
  const stamp = started
    .toISOString()
    .replace(/\.\d+Z$/, "Z")
    .replace(/:/g, "-");
  const base = `${name}-${stamp}${cfg.quick ? "-quick" : ""}`;
  writeFileSync(join(cfg.out, `${base}.json`), `${JSON.stringify(result, null, 2)}\n`);
  writeFileSync(join(cfg.out, `${base}.md`), md);
  const latest = cfg.quick ? `${name}-quick-latest` : `${name}-latest`;
  copyFileSync(join(cfg.out, `${base}.json`), join(cfg.out, `${latest}.json`));
  copyFileSync(join(cfg.out, `${base}.md`), join(cfg.out, `${latest}.md`));
}
