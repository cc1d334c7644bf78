// What the benchmarks that run on the e2e harness (test/e2e/env: private containerds, real nkitd)
// share: their entry point's preparation, the checks before a run and how a run's results are kept.
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { NKIT_CNI_BIN } from "../../test/e2e/env/nkit.js";
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
