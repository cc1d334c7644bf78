// nkit under test in the VM benchmark: one EndpointManager per datapath mode ("netkit" or "veth") in
// the guest's root netns, each with its own bpffs dir, state dir and IPv4 pod CIDR, pods in their own
// netns, wired exactly as nkitd wires them (nkit's defaults: BIG TCP on, MTU 1500). Like
// bench/lib/nkit.ts (whose startBenchManager it uses), but with the mode as a parameter; everything
// is registered with the cleanup before it exists and removed by close().
import type { Cleanup } from "./cleanup.js";
import { type BenchManager, startBenchManager } from "./nkit.js";
import type { VmMode } from "./vm-data.js";

export interface ModeManager extends BenchManager {
  mode: VmMode;
  cidr: string;
}

export async function startManager(o: {
  prefix: string;
  mode: VmMode;
  /** IPv4 pod CIDR, e.g. 10.251.10.0/24. */
  cidr: string;
  cleanup: Cleanup;
}): Promise<ModeManager> {
  const m = await startBenchManager({
    prefix: o.prefix,
    label: o.mode,
    mode: o.mode,
    cidr: o.cidr,
    cleanup: o.cleanup,
  });
  if (m.mgr.mode !== o.mode) throw new Error(`asked for a ${o.mode} EndpointManager, got ${m.mgr.mode}`);
  return { ...m, mode: o.mode, cidr: o.cidr };
}
