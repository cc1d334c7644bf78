// TS side of bpf/include/nkit_datapath.h: the endpoint datapath's map names, keys, values and
// events. Struct sizes and offsets are checked against the BTF of the built objects, and the maps
// against bpf/build/datapath.bpf.o (test/unit/bpf-shared-btf.test.ts), so a change on one side
// alone fails the tests.
import { bytes, type StructCodec, struct, u8, u32, u64 } from "./codec.js";
import type { MapLayout } from "./map.js";
import { type PacketCounter, packetCounter } from "./shared.js";

/** The maps of bpf/datapath.bpf.c, pinned by name under nkitd's bpffs dir. */
export const DatapathMap = {
  endpoints: "nk_endpoints",
  devices: "nk_devices",
  counters: "nk_counters",
  events: "nk_events",
} as const;
export type DatapathMapName = (typeof DatapathMap)[keyof typeof DatapathMap];

export const EndpointFlags = { L2: 0x1, NETKIT: 0x2 } as const;

/** struct nk_endpoint_key: family 4 or 6; addr holds 4 (IPv4, rest zero) or 16 bytes. */
export interface EndpointKey {
  family: number;
  addr: Buffer;
}

/** struct nk_endpoint */
export interface EndpointValue {
  ifindex: number;
  ep_id: number;
  flags: number;
  mac: Buffer;
  host_mac: Buffer;
}

/** struct nk_counter_key */
export interface CounterKey {
  ep_id: number;
  reason: number;
}

export const endpointKey: StructCodec<EndpointKey> = struct<EndpointKey>({
  name: "nk_endpoint_key",
  size: 20,
  fields: {
    family: { offset: 0, codec: u8 },
    addr: { offset: 4, codec: bytes(16) },
  },
  padding: [{ name: "pad", offset: 1, size: 3 }],
});

export const endpointValue: StructCodec<EndpointValue> = struct<EndpointValue>({
  name: "nk_endpoint",
  size: 24,
  fields: {
    ifindex: { offset: 0, codec: u32 },
    ep_id: { offset: 4, codec: u32 },
    flags: { offset: 8, codec: u32 },
    mac: { offset: 12, codec: bytes(6) },
    host_mac: { offset: 18, codec: bytes(6) },
  },
});

export const counterKey: StructCodec<CounterKey> = struct<CounterKey>({
  name: "nk_counter_key",
  size: 8,
  fields: {
    ep_id: { offset: 0, codec: u32 },
    reason: { offset: 4, codec: u32 },
  },
});

/** struct nk_counter (one per CPU in the map) */
export const counterValue: StructCodec<PacketCounter> = packetCounter("nk_counter");

// ---- datapath events (ring buffer nk_events) ----

export const EventType = { DROP: 1 } as const;

/** struct nk_event: addresses in network order, IPv4 in the first 4 bytes; family 0 = not IP. */
export interface DatapathEvent {
  ts_ns: bigint;
  type: number;
  reason: number;
  ep_id: number;
  ifindex: number;
  len: number;
  family: number;
  protocol: number;
  src: Buffer;
  dst: Buffer;
}

export const datapathEvent: StructCodec<DatapathEvent> = struct<DatapathEvent>({
  name: "nk_event",
  size: 64,
  fields: {
    ts_ns: { offset: 0, codec: u64 },
    type: { offset: 8, codec: u32 },
    reason: { offset: 12, codec: u32 },
    ep_id: { offset: 16, codec: u32 },
    ifindex: { offset: 20, codec: u32 },
    len: { offset: 24, codec: u32 },
    family: { offset: 28, codec: u8 },
    protocol: { offset: 29, codec: u8 },
    src: { offset: 32, codec: bytes(16) },
    dst: { offset: 48, codec: bytes(16) },
  },
  padding: [{ name: "pad", offset: 30, size: 2 }],
});

/** Every struct codec mirrored from nkit_datapath.h, for the BTF layout test. */
export const DATAPATH_STRUCTS: readonly StructCodec<unknown>[] = [
  endpointKey as StructCodec<unknown>,
  endpointValue as StructCodec<unknown>,
  counterKey as StructCodec<unknown>,
  counterValue as StructCodec<unknown>,
  datapathEvent as StructCodec<unknown>,
];

/** The maps as the TS side opens them, for the map test against the built object. */
export const DATAPATH_MAP_LAYOUTS: readonly MapLayout[] = [
  { name: DatapathMap.endpoints, type: "hash", keySize: endpointKey.size, valueSize: endpointValue.size },
  { name: DatapathMap.devices, type: "hash", keySize: u32.size, valueSize: u32.size },
  { name: DatapathMap.counters, type: "percpu_hash", keySize: counterKey.size, valueSize: counterValue.size },
  { name: DatapathMap.events, type: "ringbuf", keySize: 0, valueSize: 0 },
];
