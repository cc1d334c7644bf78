// nkit under test in the VM benchmark: one EndpointManager per datapath mode ("netkit" or "veth") in
// the guest's root netns, each with its own bpffs dir, state dir and IPv4 pod CIDR, pods in their own
// netns, wired exactly as nkitd wires them (nkit's defaults: BIG TCP on, MTU 1500). Like
// bench/lib/nkit.ts, but with the mode as a parameter; everything is registered with the cleanup
// before it exists and removed by close().
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PinDir } from "../../src/bpf/pins.js";
import { EndpointManager, type WiredEndpoint } from "../../src/datapath/endpoint-manager.js";
import { hostIfName } from "../../src/datapath/naming.js";
import { Ipam } from "../../src/ipam/ipam.js";
import { addNetns } from "./baselines.js";
import type { Cleanup } from "./cleanup.js";
import { DATAPATH_OBJ } from "./paths.js";
import { sh } from "./proc.js";
import type { VmMode } from "./vm-data.js";

export interface ModeManager {
  mode: VmMode;
  mgr: EndpointManager;
  cidr: string;
  /** Endpoint ids this manager may have wired (for the fallback device sweep). */
  ids: Set<string>;
  close(): Promise<void>;
}

export async function startManager(o: {
  prefix: string;
  mode: VmMode;
  /** IPv4 pod CIDR, e.g. 10.251.10.0/24. */
  cidr: string;
  cleanup: Cleanup;
}): Promise<ModeManager> {
  const stateDir = mkdtempSync(join(tmpdir(), `${o.prefix}-${o.mode}-`));
  const bpffsDir = `/sys/fs/bpf/${o.prefix}-${o.mode}`;
  const ids = new Set<string>();
  let mgr: EndpointManager | undefined;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    if (mgr) {
      for (const ep of mgr.list()) await mgr.unwire(ep.id).catch(() => undefined);
      await mgr.close().catch(() => undefined);
    }
    // Whatever a crashed wiring may have left behind (only devices that exist: spawning is slow here).
    for (const id of ids) {
      const dev = hostIfName(id);
      if (existsSync(`/sys/class/net/${dev}`)) await sh("ip", ["link", "del", dev]).catch(() => undefined);
    }
    new PinDir(bpffsDir).removeAll();
    rmSync(stateDir, { recursive: true, force: true });
  };
  o.cleanup.defer(`nkit ${o.mode}`, close);
  const ipam = Ipam.open({ podCIDRs: [o.cidr], statePath: join(stateDir, "ipam.json") });
  mgr = await EndpointManager.start({ mode: o.mode, bpffsDir, stateDir, ipam, objectPath: DATAPATH_OBJ });
  if (mgr.mode !== o.mode) throw new Error(`asked for a ${o.mode} EndpointManager, got ${mgr.mode}`);
  return { mode: o.mode, mgr, cidr: o.cidr, ids, close };
}

export interface VmPod {
  netnsPath: string;
  ipv4: string;
  ep: WiredEndpoint;
}

/** A new netns wired by the manager (netns creation is not part of the wiring). */
export async function wirePod(m: ModeManager, name: string, cleanup: Cleanup): Promise<VmPod> {
  const ns = await addNetns(name, cleanup);
  m.ids.add(name);
  const ep = await m.mgr.wire({ id: name, netnsPath: ns.path, labels: { bench: "vm", mode: m.mode } });
  if (!ep.addresses.ipv4) throw new Error(`${m.mode}: wired ${name} without an IPv4 address`);
  return { netnsPath: ns.path, ipv4: ep.addresses.ipv4, ep };
}

/** Packets per reason over the given endpoints (which program path carried the traffic). */
export function packetCounters(m: ModeManager, ids: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const id of ids) {
    for (const [k, v] of Object.entries(m.mgr.counters(id))) out[k] = (out[k] ?? 0) + Number(v.packets);
  }
  return out;
}

export function diffCounters(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const d = (b[k] ?? 0) - (a[k] ?? 0);
    if (d !== 0) out[k] = d;
  }
  return out;
}
