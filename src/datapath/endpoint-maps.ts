// The endpoint's entries in the datapath maps: keys by pod address, the one endpoint value (written
// at wiring and restored at adoption), the device -> endpoint number entry and the per-CPU counters.
import { EndpointFlags, type EndpointKey, type EndpointValue } from "../bpf/datapath.js";
import { mapAddress, mapAddressText, sumCounters } from "../bpf/shared.js";
import type { DeepReadonly } from "../state/json-store.js";
import { IpAddress, parseMac } from "../util/ip.js";
import type { DatapathPrograms } from "./programs.js";
import { ALL_REASON_CODES, reasonName } from "./reasons.js";
import type { DatapathMode, EndpointRecord } from "./store.js";

export type Addresses = { ipv4?: string; ipv6?: string };

export interface EndpointCounters {
  [reason: string]: { packets: bigint; bytes: bigint };
}

/** The nk_endpoints key of a recorded address. */
export const endpointKeyOf = (address: string): EndpointKey => mapAddress(IpAddress.parse(address));

export function endpointKeys(a: Addresses): EndpointKey[] {
  return [a.ipv4, a.ipv6].filter((x): x is string => x !== undefined).map(endpointKeyOf);
}

function macBytes(mac: string | undefined): Buffer {
  return mac ? parseMac(mac) : Buffer.alloc(6);
}

/** The nk_endpoints value of an endpoint; a MAC that cannot be read is all zeroes. */
export function endpointValueOf(ep: {
  mode: DatapathMode;
  hostIfindex: number;
  epNum: number;
  podMac: string | undefined;
  hostMac: string | undefined;
}): EndpointValue {
  return {
    ifindex: ep.hostIfindex,
    ep_id: ep.epNum,
    flags: ep.mode === "netkit" ? EndpointFlags.NETKIT : EndpointFlags.L2,
    mac: macBytes(ep.podMac),
    host_mac: macBytes(ep.hostMac),
  };
}

/** Per-reason packet and byte counters of one endpoint number (summed over CPUs). */
export function readEndpointCounters(progs: DatapathPrograms, epNum: number): EndpointCounters {
  const out: EndpointCounters = {};
  for (const reason of ALL_REASON_CODES) {
    const perCpu = progs.counters.lookup({ ep_id: epNum, reason });
    if (perCpu) out[reasonName(reason)] = sumCounters(perCpu);
  }
  return out;
}

export function clearEndpointCounters(progs: DatapathPrograms, epNum: number): void {
  for (const reason of ALL_REASON_CODES) progs.counters.delete({ ep_id: epNum, reason });
}

/** Removes the map entries that still belong to this record (another endpoint may hold the key
 * or the ifindex by now); safe on partial wirings and repeats. */
export function removeEndpointEntries(progs: DatapathPrograms, rec: EndpointRecord): void {
  for (const k of endpointKeys(rec.addresses)) {
    const cur = progs.endpoints.lookup(k);
    if (cur && cur.ifindex === rec.hostIfindex) progs.endpoints.delete(k);
  }
  if (rec.hostIfindex && progs.devices.lookup(rec.hostIfindex) === rec.epNum) {
    progs.devices.delete(rec.hostIfindex);
  }
  clearEndpointCounters(progs, rec.epNum);
}

/**
 * The first of the addresses already in the endpoint map, with the recorded holder (a record
 * other than `self`, the host device being wired).
 */
export function addressHolder(
  progs: DatapathPrograms,
  records: Iterable<DeepReadonly<EndpointRecord>>,
  a: Addresses,
  self: string,
): { address: string; holder?: string } | undefined {
  for (const address of [a.ipv4, a.ipv6]) {
    if (address === undefined) continue;
    const ip = IpAddress.parse(address);
    if (!progs.endpoints.lookup(mapAddress(ip))) continue;
    const holder = [...records].find(
      (r) =>
        r.hostIfName !== self &&
        [r.addresses.ipv4, r.addresses.ipv6].some((x) => x !== undefined && IpAddress.parse(x).equals(ip)),
    );
    return holder ? { address, holder: holder.id } : { address };
  }
  return undefined;
}

/** The smallest endpoint number no record uses. */
export function nextEpNum(records: Iterable<DeepReadonly<EndpointRecord>>): number {
  const used = new Set<number>();
  for (const r of records) used.add(r.epNum);
  let n = 1;
  while (used.has(n)) n++;
  return n;
}

/**
 * Removes the map entries no record accounts for: those of a wiring a crash cut short after its
 * device and entries were made but before its record learnt the device's index (the record's
 * teardown cannot tell them apart from another endpoint's then). Returns how many went.
 */
export function sweepEndpointEntries(
  progs: DatapathPrograms,
  records: Iterable<DeepReadonly<EndpointRecord>>,
): number {
  const addresses = new Set<string>();
  const devices = new Map<number, number>();
  for (const r of records) {
    for (const a of [r.addresses.ipv4, r.addresses.ipv6])
      if (a !== undefined) addresses.add(IpAddress.parse(a).text);
    if (r.hostIfindex) devices.set(r.hostIfindex, r.epNum);
  }
  let removed = 0;
  for (const [k] of [...progs.endpoints.entries()]) {
    if (addresses.has(mapAddressText(k.family, k.addr))) continue;
    progs.endpoints.delete(k);
    removed++;
  }
  for (const [ifindex, epNum] of [...progs.devices.entries()]) {
    if (devices.get(ifindex) === epNum) continue;
    progs.devices.delete(ifindex);
    removed++;
  }
  return removed;
}
