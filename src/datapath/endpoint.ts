// What callers of the EndpointManager pass in and get back, and the checks on a wire request that
// run before anything is created.
import { InvalidArgumentError, NkitError } from "../errors.js";
import type { Logger } from "../log.js";
import { IpAddress } from "../util/ip.js";
import type { Addresses } from "./endpoint-maps.js";
import type { DatapathModeSetting } from "./mode.js";
import type { DatapathMode, EndpointRecord } from "./store.js";

export interface WireRequest {
  /** Endpoint id, e.g. the pod sandbox id; the host device name derives from it. */
  id: string;
  netnsPath: string;
  /** Interface name inside the netns; default eth0. */
  ifName?: string;
  /** The endpoint's addresses, at least one: reserved beforehand by the pod lifecycle (src/pods). */
  addresses: Addresses;
  labels?: Record<string, string>;
}

export interface WiredEndpoint {
  id: string;
  epNum: number;
  mode: DatapathMode;
  hostIfName: string;
  hostIfindex: number;
  podIfName: string;
  netnsPath: string;
  addresses: Addresses;
  labels: Record<string, string>;
}

const IFNAME_RE = /^[A-Za-z0-9_.-]{1,15}$/;

export function toWired(r: EndpointRecord): WiredEndpoint {
  return {
    id: r.id,
    epNum: r.epNum,
    mode: r.mode,
    hostIfName: r.hostIfName,
    hostIfindex: r.hostIfindex,
    podIfName: r.podIfName,
    netnsPath: r.netnsPath,
    addresses: { ...r.addresses },
    labels: { ...r.labels },
  };
}

/** The pod interface name of a request (default eth0), refused unless the kernel accepts it. */
export function podIfNameOf(req: WireRequest): string {
  const ifName = req.ifName ?? "eth0";
  if (!IFNAME_RE.test(ifName)) {
    throw new InvalidArgumentError(
      `wire ${req.id}: interface name "${ifName}" is invalid (1-15 of [A-Za-z0-9_.-])`,
    );
  }
  return ifName;
}

function validateAddresses(id: string, a: Addresses): Addresses {
  const out: Addresses = {};
  if (a.ipv4 !== undefined) {
    if (IpAddress.tryParse(a.ipv4)?.family !== 4)
      throw new InvalidArgumentError(`wire ${id}: ipv4 "${a.ipv4}" is not an IPv4 address`);
    out.ipv4 = a.ipv4;
  }
  if (a.ipv6 !== undefined) {
    if (IpAddress.tryParse(a.ipv6)?.family !== 6)
      throw new InvalidArgumentError(`wire ${id}: ipv6 "${a.ipv6}" is not an IPv6 address`);
    out.ipv6 = a.ipv6;
  }
  if (out.ipv4 === undefined && out.ipv6 === undefined) {
    throw new InvalidArgumentError(
      `wire ${id}: no address given; reserve the endpoint's addresses first (nkit's pod lifecycle admits endpoints with IPAM)`,
    );
  }
  return out;
}

/** Adds context while keeping the typed error (and its code) callers match on. */
export function withContext(e: unknown, context: string): Error {
  if (e instanceof NkitError) {
    e.message = `${context}: ${e.message}`;
    return e;
  }
  return new NkitError("NKIT_INTERNAL", `${context}: ${e instanceof Error ? e.message : String(e)}`, {
    cause: e,
  });
}

export interface EndpointManagerOptions {
  mode?: DatapathModeSetting;
  /** bpffs dir owned by this instance: maps by name, endpoints/<dev>/ and uplinks/<dev>/ links. */
  bpffsDir: string;
  /** State dir: endpoints/<dev>.json records. */
  stateDir: string;
  /** Device MTU; 0 or absent = the first uplink's MTU, else 1500. */
  mtu?: number;
  /** BIG TCP for pods where every uplink can carry it (the uplinks' sizes raised to match); false never. */
  bigTcp?: boolean;
  /** veth: steer what a pod sends to a CPU per flow (RPS on the host end), so TCP's segments, sent
   * from two CPUs, are not reordered by veth's per-CPU backlogs. Default on. */
  flowSteering?: boolean;
  /** Devices facing the outside: traffic for local pods arriving there is redirected straight in. */
  uplinks?: readonly string[];
  /** Path of datapath.bpf.o (default: the package's bpf/build). */
  objectPath?: string;
  /** Capacities of the object's maps by name (nkitd's limits:); absent = the object's own. */
  mapSizes?: Readonly<Record<string, number>>;
  log?: Logger;
}

/** A new record in phase "wiring" for a request. */
export function newRecord(
  req: WireRequest,
  ep: Pick<EndpointRecord, "epNum" | "mode" | "podIfName" | "hostIfName">,
): EndpointRecord {
  return {
    id: req.id,
    epNum: ep.epNum,
    phase: "wiring",
    mode: ep.mode,
    netnsPath: req.netnsPath,
    podIfName: ep.podIfName,
    hostIfName: ep.hostIfName,
    hostIfindex: 0,
    addresses: validateAddresses(req.id, req.addresses),
    labels: { ...(req.labels ?? {}) },
    createdAt: new Date().toISOString(),
  };
}
