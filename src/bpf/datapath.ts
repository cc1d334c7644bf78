// TS side of bpf/include/nkit_datapath.h: the endpoint datapath's keys, values, flags and events.
// The struct codecs are generated from the objects' BTF (src/bpf/gen, `npm run build:abi`), as is
// which map holds which of them (src/bpf/gen/datapath.skel.ts), so a change on the C side alone
// fails the build or the tests.
import * as abi from "./gen/nkit_datapath.js";

export const EndpointFlags = { L2: 0x1, NETKIT: 0x2 } as const;

// The structs, as generated from the objects' BTF (src/bpf/gen/nkit_datapath.ts).
/** struct nk_endpoint_key: family 4 or 6; addr holds 4 (IPv4, rest zero) or 16 bytes. */
export type EndpointKey = abi.NkEndpointKey;
export type EndpointValue = abi.NkEndpoint;
export type CounterKey = abi.NkCounterKey;

// ---- datapath events (ring buffer nk_events) ----

export const EventType = { DROP: 1 } as const;

/** struct nk_event: addresses in network order, IPv4 in the first 4 bytes; family 0 = not IP. */
export type DatapathEvent = abi.NkEvent;
export const datapathEvent = abi.nkEvent;
