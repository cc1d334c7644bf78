// TS side of bpf/include/nkit_shared.h. Sizes and offsets are checked against the BTF of the built
// objects (test/unit/bpf-shared-btf.test.ts), so a change on one side alone fails the tests.
import { bytes, type StructCodec, struct, u8, u32, u64 } from "./codec.js";

export const Direction = { INGRESS: 0, EGRESS: 1 } as const;
export type Direction = (typeof Direction)[keyof typeof Direction];

/** Which program produced a counter entry (enum nk_hook_slot). */
export const HookSlot = { PRIMARY: 0, ALTERNATE: 1 } as const;
export type HookSlot = (typeof HookSlot)[keyof typeof HookSlot];

/** struct nk_hook_key */
export interface HookKey {
  ifindex: number;
  direction: number;
  slot: number;
}

/** struct nk_hook_counter (one per CPU in the map) */
export interface HookCounter {
  packets: bigint;
  bytes: bigint;
}

export const hookKey: StructCodec<HookKey> = struct<HookKey>({
  name: "nk_hook_key",
  size: 8,
  fields: {
    ifindex: { offset: 0, codec: u32 },
    direction: { offset: 4, codec: u8 },
    slot: { offset: 5, codec: u8 },
  },
  padding: [{ name: "pad", offset: 6, size: 2 }],
});

export const hookCounter: StructCodec<HookCounter> = struct<HookCounter>({
  name: "nk_hook_counter",
  size: 16,
  fields: {
    packets: { offset: 0, codec: u64 },
    bytes: { offset: 8, codec: u64 },
  },
});

/** Sums per-CPU counters. */
export function sumCounters(perCpu: readonly HookCounter[]): HookCounter {
  let packets = 0n;
  let bytes = 0n;
  for (const c of perCpu) {
    packets += c.packets;
    bytes += c.bytes;
  }
  return { packets, bytes };
}

/** Name of the hook counter map in bpf/counter.bpf.c (pinned by name under the pin root). */
export const HOOK_COUNTERS_MAP = "nk_hook_counters";

// ---- endpoint datapath (bpf/datapath.bpf.c) ----

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

/** struct nk_counter has the layout of nk_hook_counter. */
export const counterValue: StructCodec<HookCounter> = struct<HookCounter>({
  name: "nk_counter",
  size: 16,
  fields: {
    packets: { offset: 0, codec: u64 },
    bytes: { offset: 8, codec: u64 },
  },
});

// ---- datapath events (ring buffer nk_events) ----

/** Name of the drop-event ring buffer in bpf/datapath.bpf.c (pinned by name). */
export const EVENTS_MAP = "nk_events";

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

/** Every struct codec mirrored from nkit_shared.h, for the BTF layout test. */
export const SHARED_STRUCTS: readonly StructCodec<unknown>[] = [
  hookKey as StructCodec<unknown>,
  hookCounter as StructCodec<unknown>,
  endpointKey as StructCodec<unknown>,
  endpointValue as StructCodec<unknown>,
  counterKey as StructCodec<unknown>,
  counterValue as StructCodec<unknown>,
  datapathEvent as StructCodec<unknown>,
];
