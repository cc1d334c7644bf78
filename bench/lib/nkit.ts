// nkit under test: an EndpointManager (veth + tcx mode: this kernel has no netkit) in the root netns,
// with pods in their own netns, exactly as nkitd wires them. Each instance has its own bpffs dir,
// state dir and IPv4-only IPAM, all removed again by close() (registered with the cleanup first).
import { randomInt } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PinDir } from "../../src/bpf/pins.js";
import type { EndpointManager, WiredEndpoint } from "../../src/datapath/endpoint-manager.js";
import { hostIfName } from "../../src/datapath/naming.js";
import type { DatapathMode } from "../../src/datapath/store.js";
import type { PodLifecycle } from "../../src/pods/lifecycle.js";
import { PodNetwork } from "../../src/pods/network.js";
import { addNetns } from "./baselines.js";
import type { Cleanup } from "./cleanup.js";
import { DATAPATH_OBJ } from "./paths.js";
import { sh } from "./proc.js";

interface NkitInstance extends BenchManager {
  cidr: string;
}

interface NkitOptions {
  prefix: string;
  label: string;
  bigTcp: boolean;
  /** Unset: the EndpointManager's default (on). */
  flowSteering?: boolean;
  cleanup: Cleanup;
  /** IPv4 prefix length of the pod CIDR (10.251.x.0/len). */
  v4Prefix?: number;
}

/** A pod network with its own bpffs dir, state dir and IPAM, as the benchmarks run nkit. */
export interface BenchManager {
  mgr: EndpointManager;
  /** The way pods are wired, as nkitd wires them: admit() with addresses from the IPAM, release(). */
  pods: PodLifecycle;
  bpffsDir: string;
  /** Endpoint ids this manager may have wired (for the fallback device sweep). */
  ids: Set<string>;
  close(): Promise<void>;
}

/**
 * Starts an EndpointManager named `${prefix}-${label}` on the given IPv4 pod CIDR. Its close() is
 * registered with the cleanup before anything exists: it unwires every endpoint, stops the manager,
 * deletes whatever a crashed wiring left behind and removes the bpffs and state dirs.
 */
export async function startBenchManager(o: {
  prefix: string;
  label: string;
  mode: DatapathMode;
  cidr: string;
  /** Unset: the EndpointManager's default (on). */
  bigTcp?: boolean;
  flowSteering?: boolean;
  /** Devices nk_from_uplink is attached to. */
  uplinks?: readonly string[];
  cleanup: Cleanup;
}): Promise<BenchManager> {
  const stateDir = mkdtempSync(join(tmpdir(), `${o.prefix}-${o.label}-`));
  const bpffsDir = `/sys/fs/bpf/${o.prefix}-${o.label}`;
  const ids = new Set<string>();
  let net: PodNetwork | undefined;
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    if (net) {
      for (const ep of net.endpoints.list()) await net.pods.release(ep.id).catch(() => undefined);
      await net.close().catch(() => undefined);
    }
    // Whatever a crashed wiring may have left behind (only devices that exist: spawning is slow in the VM).
    for (const id of ids) {
      const dev = hostIfName(id);
      if (existsSync(`/sys/class/net/${dev}`)) await sh("ip", ["link", "del", dev]).catch(() => undefined);
    }
    new PinDir(bpffsDir).removeAll();
    rmSync(stateDir, { recursive: true, force: true });
  };
  o.cleanup.defer(`nkit ${o.label}`, close);
  net = await PodNetwork.open({
    mode: o.mode,
    bpffsDir,
    stateDir,
    podCIDRs: [o.cidr],
    ...(o.bigTcp === undefined ? {} : { bigTcp: o.bigTcp }),
    ...(o.flowSteering === undefined ? {} : { flowSteering: o.flowSteering }),
    ...(o.uplinks ? { uplinks: o.uplinks } : {}),
    objectPath: DATAPATH_OBJ,
  });
  return { mgr: net.endpoints, pods: net.pods, bpffsDir, ids, close };
}

export async function startNkit(o: NkitOptions): Promise<NkitInstance> {
  const len = o.v4Prefix ?? 24;
  // 10.251/16 is outside the 10.100-249 range the integration tests draw from.
  const cidr = `10.251.${len >= 24 ? randomInt(0, 256) : randomInt(0, 16) * 16}.0/${len}`;
  const m = await startBenchManager({
    prefix: o.prefix,
    label: o.label,
    mode: "veth",
    cidr,
    bigTcp: o.bigTcp,
    ...(o.flowSteering === undefined ? {} : { flowSteering: o.flowSteering }),
    cleanup: o.cleanup,
  });
  return { ...m, cidr };
}

/** Packets per reason over the given endpoints (which program path carried the traffic). */
export function packetCounters(m: { mgr: EndpointManager }, ids: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const id of ids) {
    for (const [k, v] of Object.entries(m.mgr.counters(id))) out[k] = (out[k] ?? 0) + Number(v.packets);
  }
  return out;
}

/** b - a per key, only the keys that changed. */
export function diffCounters(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const d = (b[k] ?? 0) - (a[k] ?? 0);
    if (d !== 0) out[k] = d;
  }
  return out;
}

/** A pod of a bench pod network: a netns of its own, admitted as nkitd admits one. */
interface BenchPod {
  netnsPath: string;
  ipv4: string;
  ep: WiredEndpoint;
  /** Deletes the netns. */
  del(): Promise<void>;
}

/** Creates netns `name` (registered with the cleanup first) and admits it to m as endpoint `name`. */
export async function admitPod(
  m: BenchManager,
  name: string,
  cleanup: Cleanup,
  labels?: Record<string, string>,
): Promise<BenchPod> {
  const ns = await addNetns(name, cleanup);
  m.ids.add(name);
  const ep = await m.pods.admit({ id: name, netnsPath: ns.path, ...(labels ? { labels } : {}) });
  if (!ep.addresses.ipv4) throw new Error(`nkit wired ${name} without an IPv4 address`);
  return { netnsPath: ns.path, ipv4: ep.addresses.ipv4, ep, del: ns.del };
}

interface NkitPair {
  nkit: NkitInstance;
  client: { netnsPath: string; ipv4: string; ep: WiredEndpoint };
  server: { netnsPath: string; ipv4: string; ep: WiredEndpoint };
  teardown(): Promise<void>;
}

export async function nkitPair(o: NkitOptions): Promise<NkitPair> {
  const nkit = await startNkit(o);
  const wire = (role: string) =>
    admitPod(nkit, `${o.prefix}-${o.label}-${role}`, o.cleanup, { bench: o.label, role });
  const c = await wire("c");
  const s = await wire("s");
  return {
    nkit,
    client: { netnsPath: c.netnsPath, ipv4: c.ipv4, ep: c.ep },
    server: { netnsPath: s.netnsPath, ipv4: s.ipv4, ep: s.ep },
    teardown: async () => {
      await nkit.close();
      await c.del();
      await s.del();
    },
  };
}
