// The endpoint's devices: the netkit or veth pair, and the configuration on both sides (addresses,
// routes, static neighbours, sysctls, BIG TCP, MTU) that makes the pod reach its gateway.

import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { readFile, writeFile } from "node:fs/promises";
import { NotFoundError } from "../errors.js";
import type { Logger } from "../log.js";
import { type Link, Rtnl, type SkippedChange, sysctlWrite } from "../netlink/index.js";
import { formatMac } from "../util/ip.js";
import { settleAll } from "../util/settle.js";
import type { Addresses } from "./endpoint-maps.js";
import type { DatapathMode, EndpointRecord } from "./store.js";

/** The pod's gateway for veth mode: link-local, answered by a static neighbour entry in the pod. */
export const GATEWAY_V4 = "169.254.1.1";
export const GATEWAY_V6 = "fe80::1";
/** BIG TCP: 192 KiB GSO/GRO for IPv4 and IPv6 where kernel and device accept it. */
export const BIG_TCP_SIZE = 196608;

export interface DeviceOptions {
  mode: DatapathMode;
  mtu: number;
  /** Default on; false leaves the kernel's GSO/GRO sizes. */
  bigTcp?: boolean | undefined;
  /** Default on: RPS on veth host ends (steerReceives). */
  flowSteering?: boolean | undefined;
  log?: Logger | undefined;
}

/** Device MTU: the configured one, else the first uplink's, else 1500. */
export async function resolveMtu(
  host: Rtnl,
  configured: number | undefined,
  uplinks: readonly string[] | undefined,
): Promise<number> {
  if (configured) return configured;
  const first = uplinks?.[0];
  return first ? ((await host.requireLink(first)).mtu ?? 1500) : 1500;
}

/** Why an uplink cannot transmit BIG TCP packets as they are, or undefined when it can. */
function bigTcpGap(l: Link): string | undefined {
  if (l.gsoIpv4MaxSize === undefined) return "the kernel has no IPv4 BIG TCP (Linux >= 6.3)";
  if ((l.tsoMaxSize ?? 0) < BIG_TCP_SIZE)
    return `tso_max_size ${l.tsoMaxSize ?? "unknown"} < ${BIG_TCP_SIZE}`;
  return undefined;
}

/**
 * Whether pods get BIG TCP. A pod's socket sizes its packets for the pod's device, whatever the
 * destination, and an uplink that cannot transmit a 192 KiB packet makes the kernel cut it into
 * MSS-sized ones in software (measured: masquerade streams at 0.65x iptables', 1.44x with BIG TCP
 * end to end; pod <-> pod streams are no faster with it on this VM). So, as Cilium does, pods get
 * it only when every uplink can carry it, and those uplinks get the same GSO/GRO sizes.
 */
export async function resolveBigTcp(
  host: Rtnl,
  wanted: boolean | undefined,
  uplinks: readonly string[] | undefined,
  log?: Logger,
): Promise<boolean> {
  if (wanted === false) return false;
  const links = await Promise.all((uplinks ?? []).map((u) => host.requireLink(u)));
  const gaps = links.flatMap((l) => {
    const gap = bigTcpGap(l);
    return gap ? [`${l.name}: ${gap}`] : [];
  });
  if (gaps.length > 0) {
    log?.info(
      { uplinks: gaps },
      "pods run with 64 KiB GSO/GRO (no BIG TCP): an uplink cannot transmit larger packets",
    );
    return false;
  }
  for (const l of links) await raiseUplinkOffloads(host, l, log);
  return true;
}

/**
 * Gives an uplink BIG TCP's GSO/GRO sizes where it has less (a device made again comes back with
 * the kernel's 64 KiB). Returns whether it had to; false also when the device cannot take them.
 */
export async function raiseUplinkOffloads(host: Rtnl, uplink: Link, log?: Logger): Promise<boolean> {
  const gap = bigTcpGap(uplink);
  if (gap) {
    log?.warn(
      { uplink: uplink.name, gap },
      "an uplink cannot transmit the pods' BIG TCP packets: the kernel segments them in software",
    );
    return false;
  }
  const low = (Object.keys(BIG_TCP_SIZES) as (keyof typeof BIG_TCP_SIZES)[]).filter(
    (k) => (uplink[k] ?? 0) < BIG_TCP_SIZE,
  );
  if (low.length === 0) return false;
  const update: { -readonly [K in keyof typeof BIG_TCP_SIZES]?: number } = {};
  for (const k of low) update[k] = BIG_TCP_SIZE;
  await host.updateLink(uplink.index, update);
  log?.info({ uplink: uplink.name, size: BIG_TCP_SIZE }, "uplink GSO/GRO sizes raised for BIG TCP");
  return true;
}

/** A pair createPair made: its host end, and the MAC nkit gave the pod end (veth). */
export interface Pair {
  host: Link;
  podMac: string | undefined;
}

/** The pod's end of a pair: what configuring it needs. */
export interface PodEnd {
  index: number;
  mac: string | undefined;
}

/**
 * Creates the pair with its pod end already in the pod's netns. veth ends get their MACs from us,
 * not the kernel: the pod end's MAC is then known without asking the pod's netns, and udev's
 * MACAddressPolicy (which rewrites kernel-random MACs shortly after creation) leaves them alone.
 */
export async function createPair(
  host: Rtnl,
  o: DeviceOptions,
  hostName: string,
  podIfName: string,
  netnsPath: string,
): Promise<Pair> {
  const common = {
    name: hostName,
    peerName: podIfName,
    peerNetnsPath: netnsPath,
    mtu: o.mtu,
    peerMtu: o.mtu,
  };
  if (o.mode === "netkit") {
    // L3, host side passes, pod side blackholes until the programs are attached (fail closed).
    const link = await host.createNetkit({ ...common, mode: "l3", policy: "pass", peerPolicy: "drop" });
    return { host: link, podMac: undefined };
  }
  const podMac = randomMac();
  // One queue pair: the host end gets one receive queue to steer (steerReceives), and a veth's
  // queues only matter with XDP, which nkit does not use.
  const link = await host.createVeth({ ...common, mac: randomMac(), peerMac: podMac, queues: 1 });
  return { host: link, podMac };
}

/**
 * The pod end of a pair createPair made: the host device names its peer's index (IFLA_LINK; veth,
 * and netkit, whose L3 ends have no MAC), so the pod's netns is asked only when it does not.
 */
export async function podEndOf(pod: Rtnl, o: DeviceOptions, pair: Pair, podIfName: string): Promise<PodEnd> {
  if (pair.host.peerIndex && (o.mode === "netkit" || pair.podMac)) {
    return { index: pair.host.peerIndex, mac: pair.podMac };
  }
  const link = await pod.requireLink(podIfName);
  return { index: link.index, mac: link.mac };
}

const BIG_TCP_SIZES = {
  gsoMaxSize: BIG_TCP_SIZE,
  groMaxSize: BIG_TCP_SIZE,
  gsoIpv4MaxSize: BIG_TCP_SIZE,
  groIpv4MaxSize: BIG_TCP_SIZE,
};

/** Addresses, routes, neighbours and BIG TCP in the pod, then its end up: one netlink batch. */
export async function configurePod(
  pod: Rtnl,
  o: DeviceOptions,
  podEnd: PodEnd,
  hostLink: Link,
  a: Addresses,
): Promise<void> {
  const dev = podEnd.index;
  const b = pod.batch();
  b.updateLink("lo", { up: true });
  // Older kernels lack the IPv4 sizes; BIG TCP is an optimisation, never a reason to fail.
  if (o.bigTcp !== false) b.updateLink(dev, BIG_TCP_SIZES, { optional: true });
  if (a.ipv4) b.addAddress({ link: dev, address: `${a.ipv4}/32` });
  if (a.ipv6) b.addAddress({ link: dev, address: `${a.ipv6}/128`, noDad: true });
  b.updateLink(dev, { up: true });
  if (o.mode === "netkit") {
    // L3 device without ARP: everything simply leaves through it.
    if (a.ipv4) b.addRoute({ dst: "default", family: 4, dev, scope: "link" });
    if (a.ipv6) b.addRoute({ dst: "default", family: 6, dev });
  } else {
    const lladdr = hostLink.mac ?? "";
    if (a.ipv4) {
      b.addRoute({ dst: GATEWAY_V4, dev, scope: "link" });
      b.addRoute({ dst: "default", family: 4, gateway: GATEWAY_V4, dev });
      b.replaceNeighbour({ link: dev, address: GATEWAY_V4, lladdr });
    }
    if (a.ipv6) {
      b.addRoute({ dst: "default", family: 6, gateway: GATEWAY_V6, dev });
      b.replaceNeighbour({ link: dev, address: GATEWAY_V6, lladdr });
    }
  }
  logSkipped(await b.commit(), o.log);
}

/**
 * The host device's sysctls, before it goes up: bpf_fib_lookup refuses to route packets arriving on
 * a device with forwarding off; rp_filter must not judge traffic the programs already vetted.
 */
export async function prepareHost(o: DeviceOptions, hostLink: Link, a: Addresses): Promise<void> {
  const dev = hostLink.name;
  const writes: Promise<void>[] = [];
  if (o.mode === "veth" && o.flowSteering !== false) writes.push(steerReceives(hostLink, o.log));
  if (a.ipv4) {
    writes.push(sysctlWrite(`net/ipv4/conf/${dev}/forwarding`, 1));
    writes.push(sysctlWrite(`net/ipv4/conf/${dev}/rp_filter`, 0));
  }
  // IPv6 checks forwarding per ingress device too (pod replies to host ports reached from another
  // host, and pod -> off-host); the host device faces only its pod, so routing there is all it does.
  if (a.ipv6) writes.push(sysctlWrite(`net/ipv6/conf/${dev}/forwarding`, 1));
  await settleAll(writes);
}

/**
 * Receive Packet Steering on a veth host end: every packet a pod sends is queued to the CPU its
 * flow hashes to. Without it veth queues each packet to the backlog of the CPU that sent it, and
 * TCP sends a flow's segments from two CPUs (the writer's, and the one that took the ACK), so the
 * two backlogs reorder them: thousands of spurious retransmits per second of a pod <-> pod stream
 * (bench/README.md, "Bulk throughput").
 */
async function steerReceives(hostLink: Link, log: Logger | undefined): Promise<void> {
  // sysfs shows the devices of the netns that mounted it, which need not be ours (nkitd in a
  // netns of its own under the host's /sys): the index says whether this is our device.
  const dir = `/sys/class/net/${hostLink.name}`;
  let why: string | undefined;
  try {
    if (Number((await readFile(`${dir}/ifindex`, "utf8")).trim()) === hostLink.index) {
      await writeFile(`${dir}/queues/rx-0/rps_cpus`, onlineCpuMask());
      return;
    }
    why = "/sys does not show this network namespace's devices (mount a sysfs of nkitd's own netns)";
  } catch (e) {
    why =
      (e as NodeJS.ErrnoException).code === "ENOENT"
        ? "/sys does not show this network namespace's devices, or the kernel lacks CONFIG_RPS"
        : (e as Error).message;
  }
  // An optimisation, like BIG TCP: never a reason to fail a pod. Said once, not per pod.
  if (!steeringUnavailableLogged) {
    steeringUnavailableLogged = true;
    log?.warn({ dev: hostLink.name }, `flow steering off: ${why}`);
  }
}

let steeringUnavailableLogged = false;

let cpuMask: string | undefined;

/** The online CPUs' mask (read once: CPUs that come online later do not get steered to). */
function onlineCpuMask(): string {
  cpuMask ??= cpuMaskOf(readFileSync("/sys/devices/system/cpu/online", "utf8"));
  return cpuMask;
}

/** A CPU list ("0-3,8") as sysfs writes a CPU mask: hex, 32 CPUs per comma-separated group. */
export function cpuMaskOf(list: string): string {
  const cpus: number[] = [];
  for (const part of list.trim().split(",")) {
    const [lo, hi] = part.split("-").map(Number);
    if (lo === undefined || !Number.isInteger(lo)) continue;
    for (let c = lo; c <= (hi ?? lo); c++) cpus.push(c);
  }
  const groups = new Array<number>(Math.floor(Math.max(0, ...cpus) / 32) + 1).fill(0);
  for (const c of cpus) groups[Math.floor(c / 32)]! |= 1 << (c % 32);
  return groups
    .reverse()
    .map((g, i) => (g >>> 0).toString(16).padStart(i === 0 ? 1 : 8, "0"))
    .join(",");
}

/** BIG TCP, the host device up, its routes and neighbours to the pod: one netlink batch. Call it
 * last: the device carries traffic from here on. */
export async function raiseHost(
  host: Rtnl,
  o: DeviceOptions,
  hostLink: Link,
  podEnd: PodEnd,
  a: Addresses,
): Promise<void> {
  const dev = hostLink.index;
  const b = host.batch();
  if (o.bigTcp !== false) b.updateLink(dev, BIG_TCP_SIZES, { optional: true });
  b.updateLink(dev, { up: true });
  const lladdr = podEnd.mac ?? "";
  if (a.ipv4) {
    b.addRoute({ dst: `${a.ipv4}/32`, dev, scope: "link" });
    if (o.mode === "veth") b.replaceNeighbour({ link: dev, address: a.ipv4, lladdr });
  }
  if (a.ipv6) {
    b.addRoute({ dst: `${a.ipv6}/128`, dev });
    if (o.mode === "veth") b.replaceNeighbour({ link: dev, address: a.ipv6, lladdr });
  }
  logSkipped(await b.commit(), o.log);
}

/**
 * Takes an endpoint off the datapath without waiting for its pair's deletion (which waits for RCU
 * grace periods in the kernel, ~20 ms here): the host end goes down, so nothing the pod sends gets
 * past it, and its routes go, so its addresses are free for another endpoint at once. False when
 * the device is gone already.
 */
export async function lowerHost(host: Rtnl, rec: EndpointRecord): Promise<boolean> {
  const dev = rec.hostIfindex;
  // By name: nk names are nkit's, an index may have gone to another device if this one vanished.
  const b = host.batch().updateLink(rec.hostIfName, { up: false });
  // IPv4 routes go with the device's "up"; IPv6 ones would stay, marked linkdown.
  if (rec.addresses.ipv4) b.deleteRoute({ dst: `${rec.addresses.ipv4}/32`, dev });
  if (rec.addresses.ipv6) b.deleteRoute({ dst: `${rec.addresses.ipv6}/128`, dev });
  try {
    await b.commit();
    return true;
  } catch (e) {
    if (e instanceof NotFoundError) return false;
    throw e;
  }
}

function logSkipped(skipped: readonly SkippedChange[], log: Logger | undefined): void {
  for (const s of skipped) log?.debug({ err: s.error, operation: s.operation }, "BIG TCP sizes not accepted");
}

/** A locally administered unicast MAC. */
function randomMac(): string {
  const b = randomBytes(6);
  b[0] = ((b[0] ?? 0) & 0xfe) | 0x02;
  return formatMac(b);
}

/**
 * Checks that a wired endpoint's pod side is still what wiring made: the interface exists, is up
 * and holds every address. Returns the problem, or undefined when intact.
 */
export async function verifyPodSide(r: EndpointRecord): Promise<string | undefined> {
  let pod: Rtnl;
  try {
    pod = await Rtnl.inNetns(r.netnsPath);
  } catch (e) {
    return `network namespace ${r.netnsPath}: ${(e as Error).message}`;
  }
  try {
    const link = await pod.getLink(r.podIfName);
    if (!link) return `${r.podIfName} is gone from ${r.netnsPath}`;
    if (!link.up) return `${r.podIfName} in ${r.netnsPath} is down`;
    const have = new Set((await pod.listAddresses({ link: link.index })).map((a) => a.address));
    for (const want of [r.addresses.ipv4, r.addresses.ipv6]) {
      if (want !== undefined && !have.has(want))
        return `${r.podIfName} in ${r.netnsPath} lost address ${want}`;
    }
    return undefined;
  } finally {
    await pod.close();
  }
}

/** The pod interface's MAC, or undefined when the netns or interface cannot be read. */
export async function podMac(rec: EndpointRecord): Promise<string | undefined> {
  let pod: Rtnl | undefined;
  try {
    pod = await Rtnl.inNetns(rec.netnsPath);
    return (await pod.getLink(rec.podIfName))?.mac;
  } catch {
    return undefined;
  } finally {
    await pod?.close();
  }
}
