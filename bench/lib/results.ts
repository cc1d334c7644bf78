// What the side-by-side benchmarks (services, masquerade) share: their flags and how they write
// results (a timestamped JSON + Markdown pair and a *-latest copy in bench/results).
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { RESULTS_DIR } from "./paths.js";

interface RunConfig {
  rounds: number;
  seconds: number;
  quick: boolean;
  out: string;
}

/** --quick (1 round × 2 s), --rounds N, --seconds S, --out DIR; default 3 rounds × 4 s. */
export function parseRunArgs(argv: readonly string[]): RunConfig {
  const quick = argv.includes("--quick");
  const cfg: RunConfig = { rounds: quick ? 1 : 3, seconds: quick ? 2 : 4, quick, out: RESULTS_DIR };
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1];
    if (argv[i] === "--rounds" && v) cfg.rounds = Number(v);
    if (argv[i] === "--seconds" && v) cfg.seconds = Number(v);
    if (argv[i] === "--out" && v) cfg.out = v;
  }
  return cfg;
}

/** Writes <name>-<time>[-quick].{json,md} and copies them to <name>[-quick]-latest.{json,md}. */
export function writeResults(cfg: RunConfig, name: string, started: Date, result: unknown, md: string): void {
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
