// The datapath maps nkitd owns, opened from their bpffs pins and decoded with the TS codecs of
// bpf/include/nkit_shared.h (src/bpf/shared.ts) for `nkit bpf map list|dump` and the metrics.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { ipv4, ipv6, u32 } from "../bpf/codec.js";
import { openPinned } from "../bpf/handle.js";
import { BpfMap, PerCpuMap } from "../bpf/map.js";
import {
  type CounterKey,
  counterKey,
  counterValue,
  EndpointFlags,
  type EndpointKey,
  type EndpointValue,
  EVENTS_MAP,
  endpointKey,
  endpointValue,
  type HookCounter,
  sumCounters,
} from "../bpf/shared.js";
import { isDrop, reasonName } from "../datapath/reasons.js";
import { NotFoundError } from "../errors.js";
import { bpfAddon, type NativeMapInfo } from "../native/bpf.js";
import type * as T from "./types.js";

export type Json = string | number | boolean | null | Json[] | { [k: string]: Json };

export const DATAPATH_MAPS = ["nk_endpoints", "nk_devices", "nk_counters", EVENTS_MAP] as const;
export type DatapathMapName = (typeof DATAPATH_MAPS)[number];

export function formatAddr(family: number, addr: Buffer): string {
  if (family === 4) return ipv4.decode(addr, 0);
  if (family === 6) return ipv6.decode(addr, 0);
  return addr.toString("hex");
}

export function formatMac(mac: Buffer): string {
  return [...mac].map((b) => b.toString(16).padStart(2, "0")).join(":");
}

function flagNames(flags: number): string[] {
  return Object.entries(EndpointFlags)
    .filter(([, v]) => (flags & v) !== 0)
    .map(([k]) => k);
}

export function decodeEndpointKey(k: EndpointKey): { [k: string]: Json } {
  return { family: k.family, addr: formatAddr(k.family, k.addr) };
}

export function decodeEndpointValue(v: EndpointValue): { [k: string]: Json } {
  return {
    ifindex: v.ifindex,
    ep_id: v.ep_id,
    flags: flagNames(v.flags),
    mac: formatMac(v.mac),
    host_mac: formatMac(v.host_mac),
  };
}

export function decodeCounterKey(k: CounterKey): { [k: string]: Json } {
  return { ep_id: k.ep_id, reason: reasonName(k.reason), reason_code: k.reason, drop: isDrop(k.reason) };
}

export function decodeCounterValue(perCpu: readonly HookCounter[]): { [k: string]: Json } {
  const s = sumCounters(perCpu);
  return { packets: Number(s.packets), bytes: Number(s.bytes) };
}

function pinOf(bpffsDir: string, name: string): string {
  return join(bpffsDir, name);
}

function requireKnown(name: string): DatapathMapName {
  const known = DATAPATH_MAPS.find((m) => m === name);
  if (!known) {
    throw new NotFoundError(`no datapath map named "${name}"; known maps: ${DATAPATH_MAPS.join(", ")}`);
  }
  return known;
}

function rawInfo(pin: string): NativeMapInfo {
  const addon = bpfAddon();
  const h = openPinned(pin, "map");
  try {
    return addon.mapInfo(h);
  } finally {
    addon.fdClose(h);
  }
}

function toInfo(name: string, pin: string, info: NativeMapInfo, entries: number): T.MapInfo {
  return {
    name,
    type: info.typeName,
    keySize: info.keySize,
    valueSize: info.valueSize,
    maxEntries: info.maxEntries,
    entries,
    dumpable: name !== EVENTS_MAP,
    pinPath: pin,
  };
}

/** Every datapath map pinned under bpffsDir, with its current entry count. */
export function listMaps(bpffsDir: string): T.MapInfo[] {
  const out: T.MapInfo[] = [];
  for (const name of DATAPATH_MAPS) {
    const pin = pinOf(bpffsDir, name);
    if (!existsSync(pin)) continue;
    const info = rawInfo(pin);
    const entries = name === EVENTS_MAP ? 0 : dumpMap(bpffsDir, name).entries.length;
    out.push(toInfo(name, pin, info, entries));
  }
  return out;
}

/** Decoded entries of one datapath map. */
export function dumpMap(bpffsDir: string, name: string): { map: T.MapInfo; entries: [Json, Json][] } {
  const known = requireKnown(name);
  const pin = pinOf(bpffsDir, known);
  if (!existsSync(pin)) throw new NotFoundError(`map ${known} is not pinned at ${pin}`);
  let entries: [Json, Json][];
  switch (known) {
    case "nk_endpoints": {
      const m = BpfMap.fromPin(pin, endpointKey, endpointValue);
      try {
        entries = m.lookupBatch().map(([k, v]) => [decodeEndpointKey(k), decodeEndpointValue(v)]);
      } finally {
        m.close();
      }
      break;
    }
    case "nk_devices": {
      const m = BpfMap.fromPin(pin, u32, u32);
      try {
        entries = m.lookupBatch().map(([k, v]) => [{ ifindex: k }, { ep_id: v }]);
      } finally {
        m.close();
      }
      break;
    }
    case "nk_counters": {
      const m = PerCpuMap.fromPin(pin, counterKey, counterValue);
      try {
        entries = m.lookupBatch().map(([k, v]) => [decodeCounterKey(k), decodeCounterValue(v)]);
      } finally {
        m.close();
      }
      break;
    }
    case EVENTS_MAP:
      throw new NotFoundError(
        `map ${EVENTS_MAP} is a ring buffer: it has no entries to dump; stream it with \`nkit monitor\``,
      );
  }
  entries.sort((a, b) => (JSON.stringify(a[0]) < JSON.stringify(b[0]) ? -1 : 1));
  return { map: toInfo(known, pin, rawInfo(pin), entries.length), entries };
}

/** Raw summed counters per (ep_id, reason) for the metrics collector. */
export function readCounters(
  bpffsDir: string,
): { epId: number; reason: number; packets: bigint; bytes: bigint }[] {
  const pin = pinOf(bpffsDir, "nk_counters");
  if (!existsSync(pin)) return [];
  const m = PerCpuMap.fromPin(pin, counterKey, counterValue);
  try {
    return m.lookupBatch().map(([k, v]) => {
      const s = sumCounters(v);
      return { epId: k.ep_id, reason: k.reason, packets: s.packets, bytes: s.bytes };
    });
  } finally {
    m.close();
  }
}
