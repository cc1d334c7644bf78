// A cgroup v2 directory of a test's own (under the host's cgroup2 mount, wherever this host has it)
// for the socket load-balancer to attach to, and commands run inside it. Removed by the scope; a
// cgroup still holding processes cannot be removed, so callers let their children exit first.
import { mkdirSync, readFileSync, rmdirSync } from "node:fs";
import { join } from "node:path";
import { RUN_ID, TEST_PREFIX } from "./names.js";
import type { Scope } from "./scope.js";
import { type RunResult, run } from "./sys.js";

/** The cgroup2 mount point from /proc/mounts (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts). */
export function cgroup2Root(): string {
  for (const line of readFileSync("/proc/mounts", "utf8").split("\n")) {
    const [, mountPoint, fsType] = line.split(" ");
    if (fsType === "cgroup2" && mountPoint) return mountPoint;
  }
  throw new Error("no cgroup2 mount in /proc/mounts: the socket load-balancer tests need cgroup v2");
}

let seq = 0;

export function createTestCgroup(scope: Scope, label: string): string {
  const dir = join(cgroup2Root(), `${TEST_PREFIX}-${RUN_ID}-${label}-${process.pid}-${seq++}`);
  mkdirSync(dir);
  scope.defer(() => rmdirSync(dir));
  return dir;
}

/** Runs cmd inside the cgroup (and, when given, a network namespace) and waits for it. */
export function inCgroup(
  cgroup: string,
  netnsPath: string | undefined,
  cmd: string,
  args: readonly string[],
  timeoutMs?: number,
): Promise<RunResult> {
  const inner = netnsPath ? ["nsenter", `--net=${netnsPath}`, "--", cmd, ...args] : [cmd, ...args];
  // The shell moves itself into the cgroup, then becomes the command: every socket it opens is in it.
  return run("sh", ["-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroup, ...inner], timeoutMs);
}
