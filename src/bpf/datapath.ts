// TS side of bpf/include/nkit_datapath.h: the endpoint datapath's map names, keys, values and
// events. The struct codecs are generated from the objects' BTF (src/bpf/gen, `npm run build:abi`),
// and the maps are checked against bpf/build/datapath.bpf.o (test/unit/bpf-shared-btf.test.ts), so
// a change on one side alone fails the build or the tests.
import { type StructCodec, u32 } from "./codec.js";
import * as abi from "./gen/nkit_datapath.js";
import type { MapLayout } from "./map.js";
import type { PacketCounter } from "./shared.js";

/** The maps of bpf/datapath.bpf.c, pinned by name under nkitd's bpffs dir. */
export const DatapathMap = {
  endpoints: "nk_endpoints",
  devices: "nk_devices",
  counters: "nk_counters",
  events: "nk_events",
} as const;
export type DatapathMapName = (typeof DatapathMap)[keyof typeof DatapathMap];

export const EndpointFlags = { L2: 0x1, NETKIT: 0x2 } as const;

// The structs, as generated from the objects' BTF (src/bpf/gen/nkit_datapath.ts).
/** struct nk_endpoint_key: family 4 or 6; addr holds 4 (IPv4, rest zero) or 16 bytes. */
export type EndpointKey = abi.NkEndpointKey;
export type EndpointValue = abi.NkEndpoint;
export type CounterKey = abi.NkCounterKey;
export const endpointKey = abi.nkEndpointKey;
export const endpointValue = abi.nkEndpoint;
export const counterKey = abi.nkCounterKey;
/** struct nk_counter (one per CPU in the map) */
export const counterValue: StructCodec<PacketCounter> = abi.nkCounter;

// ---- datapath events (ring buffer nk_events) ----

export const EventType = { DROP: 1 } as const;

/** struct nk_event: addresses in network order, IPv4 in the first 4 bytes; family 0 = not IP. */
export type DatapathEvent = abi.NkEvent;
export const datapathEvent = abi.nkEvent;

/** The maps as the TS side opens them, for the map test against the built object. */
export const DATAPATH_MAP_LAYOUTS: readonly MapLayout[] = [
  { name: DatapathMap.endpoints, type: "hash", keySize: endpointKey.size, valueSize: endpointValue.size },
  { name: DatapathMap.devices, type: "hash", keySize: u32.size, valueSize: u32.size },
  { name: DatapathMap.counters, type: "percpu_hash", keySize: counterKey.size, valueSize: counterValue.size },
  { name: DatapathMap.events, type: "ringbuf", keySize: 0, valueSize: 0 },
];
