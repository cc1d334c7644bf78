// The endpoint's devices: the netkit or veth pair, and the configuration on both sides (addresses,
// routes, static neighbours, sysctls, BIG TCP, MTU) that makes the pod reach its gateway.
import type { Logger } from "../log.js";
import { type Link, Rtnl, sysctlWrite } from "../netlink/index.js";
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

export function createPair(
  host: Rtnl,
  o: DeviceOptions,
  hostName: string,
  podIfName: string,
  netnsPath: string,
): Promise<Link> {
  const common = {
    name: hostName,
    peerName: podIfName,
    peerNetnsPath: netnsPath,
    mtu: o.mtu,
    peerMtu: o.mtu,
  };
  if (o.mode === "netkit") {
    // L3, host side passes, pod side blackholes until the programs are attached (fail closed).
    return host.createNetkit({ ...common, mode: "l3", policy: "pass", peerPolicy: "drop" });
  }
  return host.createVeth(common);
}

export async function configurePod(
  pod: Rtnl,
  o: DeviceOptions,
  podLink: Link,
  hostLink: Link,
  a: Addresses,
): Promise<void> {
  await pod.setLinkUp("lo");
  if (o.bigTcp !== false) await applyBigTcp(pod, podLink.index, o.log);
  if (a.ipv4) await pod.addAddress({ link: podLink.index, address: `${a.ipv4}/32` });
  if (a.ipv6) await pod.addAddress({ link: podLink.index, address: `${a.ipv6}/128`, noDad: true });
  await pod.setLinkUp(podLink.index);
  if (o.mode === "netkit") {
    // L3 device without ARP: everything simply leaves through it.
    if (a.ipv4) await pod.addRoute({ dst: "default", family: 4, dev: podLink.index, scope: "link" });
    if (a.ipv6) await pod.addRoute({ dst: "default", family: 6, dev: podLink.index });
    return;
  }
  if (a.ipv4) {
    await pod.addRoute({ dst: GATEWAY_V4, dev: podLink.index, scope: "link" });
    await pod.addRoute({ dst: "default", family: 4, gateway: GATEWAY_V4, dev: podLink.index });
    await pod.replaceNeighbour({ link: podLink.index, address: GATEWAY_V4, lladdr: hostLink.mac ?? "" });
  }
  if (a.ipv6) {
    await pod.addRoute({ dst: "default", family: 6, gateway: GATEWAY_V6, dev: podLink.index });
    await pod.replaceNeighbour({ link: podLink.index, address: GATEWAY_V6, lladdr: hostLink.mac ?? "" });
  }
}

export async function configureHost(
  host: Rtnl,
  o: DeviceOptions,
  hostLink: Link,
  podLink: Link,
  a: Addresses,
): Promise<void> {
  const dev = hostLink.name;
  if (o.bigTcp !== false) await applyBigTcp(host, hostLink.index, o.log);
  // bpf_fib_lookup refuses to route packets arriving on a device with forwarding off; rp_filter
  // must not judge traffic the programs already vetted.
  if (a.ipv4) {
    await sysctlWrite(`net/ipv4/conf/${dev}/forwarding`, 1);
    await sysctlWrite(`net/ipv4/conf/${dev}/rp_filter`, 0);
  }
  // IPv6 checks forwarding per ingress device too (pod replies to host ports reached from another
  // host, and pod -> off-host); the host device faces only its pod, so routing there is all it does.
  if (a.ipv6) await sysctlWrite(`net/ipv6/conf/${dev}/forwarding`, 1);
  await host.setLinkUp(hostLink.index);
  if (a.ipv4) {
    await host.addRoute({ dst: `${a.ipv4}/32`, dev: hostLink.index, scope: "link" });
    if (o.mode === "veth") {
      await host.replaceNeighbour({ link: hostLink.index, address: a.ipv4, lladdr: podLink.mac ?? "" });
    }
  }
  if (a.ipv6) {
    await host.addRoute({ dst: `${a.ipv6}/128`, dev: hostLink.index });
    if (o.mode === "veth") {
      await host.replaceNeighbour({ link: hostLink.index, address: a.ipv6, lladdr: podLink.mac ?? "" });
    }
  }
}

async function applyBigTcp(h: Rtnl, ifindex: number, log: Logger | undefined): Promise<void> {
  try {
    await h.setOffloadSizes(ifindex, {
      gsoMaxSize: BIG_TCP_SIZE,
      groMaxSize: BIG_TCP_SIZE,
      gsoIpv4MaxSize: BIG_TCP_SIZE,
      groIpv4MaxSize: BIG_TCP_SIZE,
    });
  } catch (e) {
    // Older kernels lack the IPv4 variants; BIG TCP is an optimisation, never a reason to fail.
    log?.debug({ err: e, ifindex }, "BIG TCP sizes not accepted");
  }
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
