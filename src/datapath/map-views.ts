// The datapath's maps as readers see them: decoded entries for `nkit bpf map list|dump` and the
// summed counters for the metrics, read from the pins (so they work in any process, not only in
// the one that loaded the programs).
import { existsSync } from "node:fs";
import { join } from "node:path";
import { type CounterKey, EndpointFlags, type EndpointKey, type EndpointValue } from "../bpf/datapath.js";
import { datapathObject } from "../bpf/gen/datapath.skel.js";
import { PerCpuMap } from "../bpf/map.js";
import { hashView, type JsonObject, type MapView, perCpuView, undumpableView } from "../bpf/map-views.js";
import { mapAddressText, type PacketCounter, sumCounters } from "../bpf/shared.js";
import { formatMac } from "../util/ip.js";
import { isDrop, reasonName } from "./reasons.js";

function flagNames(flags: number): string[] {
  return Object.entries(EndpointFlags)
    .filter(([, v]) => (flags & v) !== 0)
    .map(([k]) => k);
}

function decodeEndpointKey(k: EndpointKey): JsonObject {
  return { family: k.family, addr: mapAddressText(k.family, k.addr) };
}

function decodeEndpointValue(v: EndpointValue): JsonObject {
  return {
    ifindex: v.ifindex,
    ep_id: v.ep_id,
    flags: flagNames(v.flags),
    mac: formatMac(v.mac),
    host_mac: formatMac(v.host_mac),
  };
}

function decodeCounterKey(k: CounterKey): JsonObject {
  return { ep_id: k.ep_id, reason: reasonName(k.reason), reason_code: k.reason, drop: isDrop(k.reason) };
}

function decodeCounterValue(perCpu: readonly PacketCounter[]): JsonObject {
  const s = sumCounters(perCpu);
  return { packets: Number(s.packets), bytes: Number(s.bytes) };
}

const { maps } = datapathObject;

/** The datapath maps in the order `nkit bpf map list` shows them. */
export const DATAPATH_MAP_VIEWS: readonly MapView[] = [
  hashView(maps.nk_endpoints, (k, v) => [decodeEndpointKey(k), decodeEndpointValue(v)]),
  hashView(maps.nk_devices, (k, v) => [{ ifindex: k }, { ep_id: v }]),
  perCpuView(maps.nk_counters, (k, v) => [decodeCounterKey(k), decodeCounterValue(v)]),
  undumpableView(
    maps.nk_events,
    "is a ring buffer: it has no entries to dump; stream it with `nkit monitor`",
  ),
];

interface CounterRow {
  epId: number;
  reason: number;
  packets: bigint;
  bytes: bigint;
}

/** Summed counters per (endpoint number, reason); none when the datapath never ran here. */
export function readCounters(bpffsDir: string): CounterRow[] {
  const def = maps.nk_counters;
  const pin = join(bpffsDir, def.name);
  if (!existsSync(pin)) return [];
  const m = PerCpuMap.fromPin(pin, def.key, def.value);
  try {
    return m.lookupBatch().map(([k, v]) => {
      const s = sumCounters(v);
      return { epId: k.ep_id, reason: k.reason, packets: s.packets, bytes: s.bytes };
    });
  } finally {
    m.close();
  }
}
