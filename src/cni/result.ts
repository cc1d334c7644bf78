// CNI results (spec 1.1 "Success" section) and how nkit builds them. Pods get /32 and /128
// addresses (the datapath routes each pod by host route, there is no shared subnet), so those are
// the prefixes reported: CRI reads the pod IP of eth0 from here, Nomad and nerdctl too.
import { IpAddress } from "../util/ip.js";
import { compareVersions } from "./protocol.js";

export interface CniInterface {
  name: string;
  mac?: string;
  mtu?: number;
  sandbox?: string;
  socketPath?: string;
  pciID?: string;
}

export interface CniIpConfig {
  address: string;
  gateway?: string;
  interface?: number;
  /** Only in results of spec versions before 1.0.0. */
  version?: "4" | "6";
}

export interface CniRoute {
  dst: string;
  gw?: string;
  mtu?: number;
  advmss?: number;
  priority?: number;
  table?: number;
  scope?: number;
}

export interface CniDns {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

export interface CniResult {
  cniVersion: string;
  interfaces?: CniInterface[];
  ips?: CniIpConfig[];
  routes?: CniRoute[];
  dns?: CniDns;
}

export interface PodAddresses {
  ipv4?: string;
  ipv6?: string;
}

export interface BuildResultOptions {
  cniVersion: string;
  /** The pod interface (name, sandbox = netns path); the host device comes first when given. */
  podInterface: CniInterface;
  hostInterface?: CniInterface;
  addresses: PodAddresses;
  /** Gateways of the pod's default routes; absent = on-link default route (netkit, L3). */
  gateways?: { ipv4?: string; ipv6?: string };
  /** A previous plugin's result: nkit's entries are appended to it (spec: chained ADD). */
  prevResult?: CniResult;
}

/** Builds the ADD result, merging into prevResult, in the format of the requested version. */
export function buildResult(o: BuildResultOptions): CniResult {
  const prev = o.prevResult;
  const interfaces: CniInterface[] = [...(prev?.interfaces ?? [])];
  if (o.hostInterface) interfaces.push(o.hostInterface);
  const podIndex = interfaces.length;
  interfaces.push(o.podInterface);
  const ips: CniIpConfig[] = [...(prev?.ips ?? [])];
  const routes: CniRoute[] = [...(prev?.routes ?? [])];
  for (const family of [4, 6] as const) {
    const ip = family === 4 ? o.addresses.ipv4 : o.addresses.ipv6;
    if (ip === undefined) continue;
    const gw = family === 4 ? o.gateways?.ipv4 : o.gateways?.ipv6;
    const entry: CniIpConfig = { address: `${ip}/${family === 4 ? 32 : 128}`, interface: podIndex };
    if (gw) entry.gateway = gw;
    ips.push(entry);
    const route: CniRoute = { dst: family === 4 ? "0.0.0.0/0" : "::/0" };
    if (gw) route.gw = gw;
    routes.push(route);
  }
  const result: CniResult = {
    ...prev,
    cniVersion: o.cniVersion,
    interfaces,
    ips,
    routes,
    dns: prev?.dns ?? {},
  };
  return formatForVersion(result);
}

/** "10.47.0.5/32" -> "10.47.0.5"; an entry of another plugin's prevResult may hold any text. */
const addressPart = (ip: CniIpConfig): string => ip.address.split("/")[0] ?? "";

/** Spec versions before 1.0.0 carry "version" on each ips entry; 1.0.0 and later must not. */
export function formatForVersion(r: CniResult): CniResult {
  const old = compareVersions(r.cniVersion, "1.0.0") < 0;
  const ips = r.ips?.map((ip) => {
    const { version: _v, ...rest } = ip;
    if (!old) return rest;
    const family = IpAddress.tryParse(addressPart(ip))?.family;
    return { ...rest, version: family === 4 ? ("4" as const) : ("6" as const) };
  });
  return ips ? { ...r, ips } : r;
}

/** The plain addresses of a result's ips entries (prefix lengths dropped). */
export function resultAddresses(r: CniResult): string[] {
  return (r.ips ?? []).map(addressPart);
}
