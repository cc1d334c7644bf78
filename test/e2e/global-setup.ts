// Global setup for the e2e project: root, the artefacts from scripts/e2e/setup.sh for the selected lane,
// and a sweep of instances left by crashed runs (only those whose owning process is gone).
import { sweepStaleInstances } from "./env/containerd.js";
import { assertPrepared, laneFromEnv } from "./env/lanes.js";

export async function setup(): Promise<void> {
  if (process.getuid?.() !== 0)
    throw new Error("e2e tests need root (containerd, runc, CNI): run them as root");
  const lane = laneFromEnv();
  const b = assertPrepared(lane);
  const swept = await sweepStaleInstances();
  if (swept.length > 0) console.warn(`[e2e] removed ${swept.length} stale instance(s): ${swept.join(", ")}`);
  console.info(`[e2e] lane ${lane}: ${b.containerd}`);
}

export async function teardown(): Promise<void> {
  // instances of this run are already stopped by their suites; catch the ones a crash left behind
  const swept = await sweepStaleInstances();
  if (swept.length > 0)
    console.warn(`[e2e] removed ${swept.length} leftover instance(s): ${swept.join(", ")}`);
}
