// nkit under test: an EndpointManager (veth + tcx mode: this kernel has no netkit) in the root netns,
// with pods in their own netns, exactly as nkitd wires them. Each instance has its own bpffs dir,
// state dir and IPv4-only IPAM, all removed again by close() (registered with the cleanup first).
import { randomInt } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
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

export interface NkitInstance {
  mgr: EndpointManager;
  cidr: string;
  bpffsDir: string;
  /** Endpoint ids this instance may have wired (for the fallback device sweep). */
  ids: Set<string>;
  close(): Promise<void>;
}

export interface NkitOptions {
  prefix: string;
  label: string;
  bigTcp: boolean;
  cleanup: Cleanup;
  /** IPv4 prefix length of the pod CIDR (10.251.x.0/len). */
  v4Prefix?: number;
}

export async function startNkit(o: NkitOptions): Promise<NkitInstance> {
  const len = o.v4Prefix ?? 24;
  // 10.251/16 is outside the 10.100-249 range the integration tests draw from.
  const cidr = `10.251.${len >= 24 ? randomInt(0, 256) : randomInt(0, 16) * 16}.0/${len}`;
  const stateDir = mkdtempSync(join(tmpdir(), `${o.prefix}-${o.label}-`));
  const bpffsDir = `/sys/fs/bpf/${o.prefix}-${o.label}`;
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
    // Whatever a crashed wiring may have left behind.
    for (const id of ids) await sh("ip", ["link", "del", hostIfName(id)]).catch(() => undefined);
    new PinDir(bpffsDir).removeAll();
    rmSync(stateDir, { recursive: true, force: true });
  };
  o.cleanup.defer(`nkit ${o.label}`, close);
  const ipam = Ipam.open({ podCIDRs: [cidr], statePath: join(stateDir, "ipam.json") });
  mgr = await EndpointManager.start({
    mode: "veth",
    bpffsDir,
    stateDir,
    ipam,
    bigTcp: o.bigTcp,
    objectPath: DATAPATH_OBJ,
  });
  return { mgr, cidr, bpffsDir, ids, close };
}

export interface NkitPair {
  nkit: NkitInstance;
  client: { netnsPath: string; ipv4: string; ep: WiredEndpoint };
  server: { netnsPath: string; ipv4: string; ep: WiredEndpoint };
  /** Per-reason packet counters of both endpoints (which program path carried the traffic). */
  counters(): Record<"client" | "server", Record<string, { packets: number; bytes: number }>>;
  teardown(): Promise<void>;
}

export async function nkitPair(o: NkitOptions): Promise<NkitPair> {
  const nkit = await startNkit(o);
  const wire = async (role: string) => {
    const ns = await addNetns(`${o.prefix}-${o.label}-${role}`, o.cleanup);
    const id = `${o.prefix}-${o.label}-${role}`;
    nkit.ids.add(id);
    const ep = await nkit.mgr.wire({ id, netnsPath: ns.path, labels: { bench: o.label, role } });
    if (!ep.addresses.ipv4) throw new Error(`nkit wired ${id} without an IPv4 address`);
    return { netnsPath: ns.path, ipv4: ep.addresses.ipv4, ep, del: ns.del };
  };
  const c = await wire("c");
  const s = await wire("s");
  const counters = (id: string) => {
    const out: Record<string, { packets: number; bytes: number }> = {};
    for (const [k, v] of Object.entries(nkit.mgr.counters(id))) {
      out[k] = { packets: Number(v.packets), bytes: Number(v.bytes) };
    }
    return out;
  };
  return {
    nkit,
    client: { netnsPath: c.netnsPath, ipv4: c.ipv4, ep: c.ep },
    server: { netnsPath: s.netnsPath, ipv4: s.ipv4, ep: s.ep },
    counters: () => ({ client: counters(c.ep.id), server: counters(s.ep.id) }),
    teardown: async () => {
      await nkit.close();
      await c.del();
      await s.del();
    },
  };
}
