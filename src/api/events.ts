// Datapath events as the API streams them to `nkit monitor`: the datapath's raw records
// (src/datapath/events.ts) with wall-clock time, reason names and endpoint ids.
import { type DatapathEvent, EventType } from "../bpf/datapath.js";
import { mapAddressText } from "../bpf/shared.js";
import { reasonName } from "../datapath/reasons.js";
import type * as T from "./types.js";

/** Converts a raw record (monotonic clock) into the API event. */
export function toApiEvent(
  e: DatapathEvent,
  endpointOf: (epNum: number) => string | undefined,
  lostBefore = 0,
): T.Event {
  const nowMono = process.hrtime.bigint();
  const ageMs = Number(nowMono - e.ts_ns) / 1e6;
  return {
    type: e.type === EventType.DROP ? "drop" : `type_${e.type}`,
    time: new Date(Date.now() - Math.max(0, ageMs)).toISOString(),
    monotonicNs: e.ts_ns.toString(),
    reason: reasonName(e.reason),
    reasonCode: e.reason,
    epNum: e.ep_id,
    endpointId: (e.ep_id && endpointOf(e.ep_id)) || "",
    ifindex: e.ifindex,
    family: e.family,
    src: e.family ? mapAddressText(e.family, e.src) : "",
    dst: e.family ? mapAddressText(e.family, e.dst) : "",
    protocol: e.protocol,
    length: e.len,
    lostBefore,
  };
}
