// The test files the netkit VM lane (`npm run test:vm`, scripts/vm/run-tests.sh) runs inside the
// guest, in one boot, one file at a time. Adding a file to the lane is one line here. Keep the list
// lean: the guest runs under TCG, about 10x slower than the host for CPU work.
// NKIT_VM_TESTS (space- or comma-separated paths/globs) replaces the list for one run.
export const VM_LANE_TESTS: readonly string[] = [
  // netkit-only tests (they fail, never skip, on a kernel without netkit)
  "test/vm/netkit-*.test.ts",
  // the regular integration tests, whose netkit branches only run on a netkit kernel
  "test/integration/netlink-*.test.ts",
  "test/integration/bpf-*.test.ts",
  // the veth datapath on the 6.12 kernel too
  "test/integration/datapath-traffic.test.ts",
];

/** Files matched above that cannot pass on a netkit kernel, each with the reason. */
export const VM_LANE_EXCLUDE: readonly string[] = [];

export function vmLaneTests(env: NodeJS.ProcessEnv = process.env): string[] {
  const override = env.NKIT_VM_TESTS?.split(/[\s,]+/).filter((s) => s.length > 0);
  return override && override.length > 0 ? override : [...VM_LANE_TESTS];
}
