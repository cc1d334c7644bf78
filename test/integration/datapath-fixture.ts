// Shared setup for EndpointManager tests: a manager with its own bpffs dir, state dir and pod
// CIDRs, throwaway pod netns, an "outside" netns behind an uplink veth, and traffic helpers.
import { type ChildProcess, spawn } from "node:child_process";
import { randomInt } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "vitest";
import type { CounterKey, EndpointKey, EndpointValue } from "../../src/bpf/datapath.js";
import { datapathObject } from "../../src/bpf/gen/datapath.skel.js";
import { PinDir } from "../../src/bpf/pins.js";
import { pinnedMaps } from "../../src/bpf/skeleton.js";
import type { EndpointManager, WiredEndpoint } from "../../src/datapath/endpoint-manager.js";
import { endpointKeyOf } from "../../src/datapath/endpoint-maps.js";
import { hostIfName } from "../../src/datapath/naming.js";
import { ALL_REASON_CODES, reasonName } from "../../src/datapath/reasons.js";
import type { Ipam } from "../../src/ipam/ipam.js";
import { Rtnl } from "../../src/netlink/index.js";
import type { PodLifecycle } from "../../src/pods/lifecycle.js";
import { PodNetwork, type PodNetworkOptions } from "../../src/pods/network.js";
import { RUN_ID, uniqueBpffsDir, uniqueIfName, uniqueNetnsName } from "../helpers/names.js";
import { createNetns, type TestNetns } from "../helpers/netns.js";
import type { Scope } from "../helpers/scope.js";
import { inNetns, ipJson, run } from "../helpers/sys.js";

export const ECHO = join(import.meta.dirname, "..", "fixtures", "net", "echo.mjs");

export interface Harness {
  /** The running pod network, built as nkitd builds its own (replaced by restart()). */
  net: PodNetwork;
  /** Its datapath. */
  mgr: EndpointManager;
  /** Its IPAM (reopened from its state file by restart()). */
  ipam: Ipam;
  /** Its pod lifecycle: admit() wires a netns with addresses from the IPAM, release() undoes it. */
  pods: PodLifecycle;
  cidr4: string;
  cidr6: string;
  bpffsDir: string;
  stateDir: string;
  /** IPAM state file shared by every manager this harness starts. */
  ipamDir: string;
  podCIDRs: string[];
  /** Endpoint ids this harness may have wired (for the leak check). */
  ids: Set<string>;
  newId(label: string): string;
  /** Closes the running manager (pinned links and maps keep forwarding), like a daemon exiting. */
  stop(): Promise<void>;
  /** Stops the running manager (if any) and starts a new one on the same dirs and IPAM state. */
  restart(): Promise<EndpointManager>;
}

export function podCidrs(v4Prefix = 24): { cidr4: string; cidr6: string } {
  return {
    cidr4: `10.${randomInt(100, 250)}.${randomInt(0, 255)}.0/${v4Prefix}`,
    cidr6: `fd${randomInt(16, 255).toString(16)}:${randomInt(1, 0xffff).toString(16)}::/64`,
  };
}

export async function createHarness(
  scope: Scope,
  opts: Partial<Omit<PodNetworkOptions, "podCIDRs">> & { v4Prefix?: number; cidrs?: string[] } = {},
): Promise<Harness> {
  const { cidr4, cidr6 } = podCidrs(opts.v4Prefix);
  const stateDir = mkdtempSync(join(tmpdir(), "nkit-dp-"));
  scope.defer(() => rmSync(stateDir, { recursive: true, force: true }));
  const bpffsDir = uniqueBpffsDir("dp");
  scope.defer(() => new PinDir(bpffsDir).removeAll());
  const ipamDir = join(stateDir, "ipam");
  const podCIDRs = opts.cidrs ?? [cidr4, cidr6];
  const ids = new Set<string>();
  // Leak check runs after the manager's cleanup (Scope runs in reverse order).
  scope.defer(() => assertNoEndpointDevices(ids));
  const { v4Prefix: _p, cidrs: _c, ...mgrOpts } = opts;
  let running: PodNetwork | undefined;
  scope.defer(async () => {
    const net = running;
    running = undefined;
    if (!net) return;
    for (const ep of net.endpoints.list()) await net.pods.release(ep.id);
    await net.close();
  });
  const start = async (): Promise<Pick<Harness, "net" | "mgr" | "ipam" | "pods">> => {
    const net = await PodNetwork.open({ mode: "veth", bpffsDir, stateDir, podCIDRs, ipamDir, ...mgrOpts });
    running = net;
    return { net, mgr: net.endpoints, ipam: net.ipam, pods: net.pods };
  };
  const first = await start();
  let n = 0;
  const h: Harness = {
    ...first,
    cidr4,
    cidr6,
    bpffsDir,
    stateDir,
    ipamDir,
    podCIDRs,
    ids,
    newId: (label) => {
      const id = `nkt-${RUN_ID}-${label}-${process.pid}-${n++}-${randomInt(1e9)}`;
      ids.add(id);
      return id;
    },
    stop: async () => {
      const net = running;
      running = undefined;
      await net?.close();
    },
    restart: async () => {
      await h.stop();
      Object.assign(h, await start());
      return h.mgr;
    },
  };
  return h;
}

export async function assertNoEndpointDevices(ids: Iterable<string>): Promise<void> {
  const host = await Rtnl.host();
  try {
    const left: string[] = [];
    for (const id of ids) {
      const name = hostIfName(id);
      if (await host.getLink(name)) {
        left.push(name);
        await host.deleteLink(name);
      }
    }
    if (left.length) throw new Error(`endpoint devices leaked (now removed): ${left.join(", ")}`);
  } finally {
    await host.close();
  }
}

export async function createPod(scope: Scope, label = "pod"): Promise<TestNetns> {
  return createNetns(scope, label);
}

/** Pods "a" and "b", each in its own netns, wired by the harness's manager. */
export async function wirePodPair(
  scope: Scope,
  h: Harness,
): Promise<{ podA: TestNetns; podB: TestNetns; a: WiredEndpoint; b: WiredEndpoint }> {
  const podA = await createPod(scope, "a");
  const podB = await createPod(scope, "b");
  const a = await h.pods.admit({ id: h.newId("a"), netnsPath: podA.path });
  const b = await h.pods.admit({ id: h.newId("b"), netnsPath: podB.path });
  return { podA, podB, a, b };
}

/**
 * Adds to the pod's eth0 an IPv4 address its endpoint was never given (the endpoint's /24, last
 * octet `lastOctet`) and returns it: packets sent from it are spoofed.
 */
export async function addSpoofedAddress(
  pod: TestNetns,
  ep: WiredEndpoint,
  lastOctet: number,
): Promise<string> {
  const spoofed = ep.addresses.ipv4!.replace(/\.\d+$/, `.${lastOctet}`);
  await inNetns(pod.path, "ip", ["addr", "add", `${spoofed}/32`, "dev", "eth0"]);
  return spoofed;
}

/** Pings dst from a spoofed source; the datapath drops every packet, so no reply is awaited. */
export async function pingSpoofed(ns: TestNetns, spoofed: string, dst: string, count = 2): Promise<void> {
  const args = ["-c", String(count), "-i", "0.2", "-W", "1", "-q", "-I", spoofed, dst];
  await inNetns(ns.path, "ping", args).catch(() => undefined);
}

export async function ping(ns: TestNetns, addr: string, count = 2): Promise<boolean> {
  try {
    await inNetns(ns.path, "ping", ["-c", String(count), "-i", "0.2", "-W", "2", "-q", addr]);
    return true;
  } catch {
    return false;
  }
}

export async function startEcho(scope: Scope, ns: TestNetns | undefined, addr: string, port: number) {
  const argv = ns
    ? ["nsenter", `--net=${ns.path}`, "--", process.execPath, ECHO, "serve", addr, String(port)]
    : [process.execPath, ECHO, "serve", addr, String(port)];
  const child: ChildProcess = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "inherit"] });
  scope.defer(() => {
    child.kill("SIGKILL");
  });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("echo server did not start")), 10_000);
    child.stdout?.on("data", (d: Buffer) => {
      if (d.toString().includes("ready")) {
        clearTimeout(t);
        resolve();
      }
    });
    child.once("exit", (c) => reject(new Error(`echo server exited with ${c}`)));
  });
}

/** TCP + UDP round trip from inside ns (or the host) to addr:port. */
export async function probeEcho(ns: TestNetns | undefined, addr: string, port: number): Promise<void> {
  if (ns) await inNetns(ns.path, process.execPath, [ECHO, "probe", addr, String(port)]);
  else await run(process.execPath, [ECHO, "probe", addr, String(port)]);
}

export interface Outside {
  ns: TestNetns;
  uplink: string;
  hostV4: string;
  outsideV4: string;
  hostV6: string;
  outsideV6: string;
}

/** An "outside" netns behind an uplink veth, routing the pod CIDRs back through the host. */
export async function createOutside(scope: Scope, h: Harness): Promise<Outside> {
  const ns = await createNetns(scope, "outside");
  const uplink = uniqueIfName("up");
  const a = randomInt(0, 255);
  const hostV4 = `198.18.${a}.1`;
  const outsideV4 = `198.18.${a}.2`;
  const p6 = `2001:db8:${randomInt(1, 0xffff).toString(16)}`;
  const hostV6 = `${p6}::1`;
  const outsideV6 = `${p6}::2`;
  await run("ip", ["link", "add", uplink, "type", "veth", "peer", "name", "eth0", "netns", ns.name]);
  scope.defer(() => run("ip", ["link", "del", uplink]).catch(() => undefined));
  await run("ip", ["addr", "add", `${hostV4}/24`, "dev", uplink]);
  await run("ip", ["addr", "add", `${hostV6}/64`, "dev", uplink, "nodad"]);
  await run("ip", ["link", "set", uplink, "up"]);
  await run("ip", ["-n", ns.name, "addr", "add", `${outsideV4}/24`, "dev", "eth0"]);
  await run("ip", ["-n", ns.name, "addr", "add", `${outsideV6}/64`, "dev", "eth0", "nodad"]);
  await run("ip", ["-n", ns.name, "link", "set", "eth0", "up"]);
  await run("ip", ["-n", ns.name, "route", "add", h.cidr4, "via", hostV4]);
  await run("ip", ["-n", ns.name, "route", "add", h.cidr6, "via", hostV6]);
  await h.mgr.attachUplink(uplink);
  scope.defer(() => h.mgr.detachUplink(uplink));
  return { ns, uplink, hostV4, outsideV4, hostV6, outsideV6 };
}

/** n pod netns created with one `ip -batch` (lo is brought up by wiring), deleted the same way. */
export async function createPods(scope: Scope, n: number, label = "pod"): Promise<TestNetns[]> {
  const pods = Array.from({ length: n }, () => {
    const name = uniqueNetnsName(label);
    return { name, path: `/run/netns/${name}` };
  });
  const batch = async (verb: "add" | "del", list: TestNetns[]): Promise<void> => {
    const dir = mkdtempSync(join(tmpdir(), "nkit-netns-"));
    try {
      const file = join(dir, "batch");
      writeFileSync(file, list.map((p) => `netns ${verb} ${p.name}\n`).join(""));
      await run("ip", ["-batch", file]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  scope.defer(() =>
    batch(
      "del",
      pods.filter((p) => existsSync(p.path)),
    ),
  );
  await batch("add", pods);
  return pods;
}

// ---- independent views of what an endpoint leaves in the kernel and on disk ----

/** Canonical form of an IPv4/IPv6 address (or a /32, /128 route destination), for comparisons. */
export function addrKey(address: string): string {
  return endpointKeyString(endpointKeyOf(address.replace(/\/(32|128)$/, "")));
}

function endpointKeyString(k: EndpointKey): string {
  return `${k.family}:${k.addr.subarray(0, k.family === 4 ? 4 : 16).toString("hex")}`;
}

export interface DatapathMaps {
  /** nk_endpoints: address key (addrKey) -> value */
  endpoints: Map<string, EndpointValue>;
  /** nk_devices: host ifindex -> endpoint number */
  devices: Map<number, number>;
  /** nk_counters keys */
  counters: CounterKey[];
}

/** Reads the pinned datapath maps under bpffsDir through fresh fds (closed again). */
export function readDatapathMaps(bpffsDir: string): DatapathMaps {
  const maps = pinnedMaps(bpffsDir, datapathObject);
  const eps = maps.nk_endpoints;
  try {
    const devs = maps.nk_devices;
    try {
      const ctrs = maps.nk_counters;
      try {
        return {
          endpoints: new Map([...eps.entries()].map(([k, v]) => [endpointKeyString(k), v])),
          devices: new Map(devs.entries()),
          counters: [...ctrs.keys()],
        };
      } finally {
        ctrs.close();
      }
    } finally {
      devs.close();
    }
  } finally {
    eps.close();
  }
}

/** Per-reason packets of one endpoint number, summed over CPUs, read through the pinned map. */
export function pinnedCounters(bpffsDir: string, epNum: number): Record<string, bigint> {
  const ctrs = pinnedMaps(bpffsDir, datapathObject).nk_counters;
  try {
    const out: Record<string, bigint> = {};
    for (const reason of ALL_REASON_CODES) {
      const v = ctrs.lookup({ ep_id: epNum, reason });
      if (v) out[reasonName(reason)] = v.reduce((s, c) => s + c.packets, 0n);
    }
    return out;
  } finally {
    ctrs.close();
  }
}

interface IpRoute {
  dst: string;
  dev?: string;
  table?: string;
}
interface IpNeigh {
  dst: string;
  dev?: string;
}

/** Host routes (all tables, both families) and neighbours, for leak checks. */
export async function hostRoutesAndNeighbours(): Promise<{ routes: IpRoute[]; neighbours: IpNeigh[] }> {
  const [r4, r6, n] = await Promise.all([
    ipJson<IpRoute[]>(["-4", "route", "show", "table", "all"]),
    ipJson<IpRoute[]>(["-6", "route", "show", "table", "all"]),
    ipJson<IpNeigh[]>(["neigh", "show"]),
  ]);
  return { routes: [...r4, ...r6], neighbours: n };
}

export async function hostLinkNames(): Promise<Set<string>> {
  return new Set((await ipJson<{ ifname: string }[]>(["link", "show"])).map((l) => l.ifname));
}

/** Everything of one harness that a failed or undone wiring could leave behind. */
export interface DatapathState {
  endpoints: string[];
  devices: string[];
  /** Counter entries of endpoint numbers no device maps to (live endpoints' counters move with traffic). */
  orphanCounters: string[];
  endpointPins: string[];
  records: string[];
  ipamAllocations: string[];
  ipamUsed: number[];
  hostDevices: string[];
}

export async function datapathState(h: Harness): Promise<DatapathState> {
  const maps = readDatapathMaps(h.bpffsDir);
  const links = await hostLinkNames();
  const recDir = join(h.stateDir, "endpoints");
  return {
    endpoints: [...maps.endpoints.keys()].sort(),
    devices: [...maps.devices].map(([i, e]) => `${i}=${e}`).sort(),
    orphanCounters: maps.counters
      .filter((k) => ![...maps.devices.values()].includes(k.ep_id))
      .map((k) => `${k.ep_id}/${k.reason}`)
      .sort(),
    endpointPins: new PinDir(h.bpffsDir).sub("endpoints").list(),
    records: existsSync(recDir)
      ? readdirSync(recDir)
          .filter((f) => f.endsWith(".json"))
          .sort()
      : [],
    ipamAllocations: h.ipam
      .list()
      .map((a) => a.id)
      .sort(),
    ipamUsed: h.ipam.usage().map((u) => u.used),
    hostDevices: [...h.ids].map(hostIfName).filter((n) => links.has(n)),
  };
}

/**
 * Asserts that endpoint `id` left nothing, once its unwire's device deletion (which follows the
 * unwire's answer) is done: no host device, no route or neighbour for its device or
 * addresses, no map entry for its addresses, no pin dir, no record, no IPAM allocation; and, when
 * `before` is given, that the harness state as a whole is exactly what it was.
 */
export async function expectNothingLeft(
  h: Harness,
  id: string,
  addresses: readonly string[] = [],
  before?: DatapathState,
): Promise<void> {
  await h.mgr.settled(id);
  const dev = hostIfName(id);
  const keys = new Set(addresses.map(addrKey));
  const matches = (e: { dst: string; dev?: string }): boolean => {
    if (e.dev === dev) return true;
    try {
      return keys.has(addrKey(e.dst));
    } catch {
      return false; // "default", prefixes, multicast...
    }
  };
  expect((await hostLinkNames()).has(dev), `host device ${dev}`).toBe(false);
  const { routes, neighbours } = await hostRoutesAndNeighbours();
  expect(routes.filter(matches), "host routes").toEqual([]);
  expect(neighbours.filter(matches), "host neighbours").toEqual([]);
  const maps = readDatapathMaps(h.bpffsDir);
  expect(
    [...maps.endpoints.keys()].filter((k) => keys.has(k)),
    "nk_endpoints entries",
  ).toEqual([]);
  expect(existsSync(join(h.bpffsDir, "endpoints", dev)), "endpoint pin dir").toBe(false);
  expect(existsSync(join(h.stateDir, "endpoints", `${dev}.json`)), "endpoint record").toBe(false);
  expect(h.ipam.get(id), "IPAM allocation").toBeUndefined();
  if (before) expect(await datapathState(h)).toEqual(before);
}
