// TS side of bpf/test/nkit_test.h, the structs of the BPF test fixtures (bpf/test/counter.bpf.c,
// bpf/test/maps.bpf.c). Checked against the BTF of the built fixtures like the product's codecs.
import { type StructCodec, struct, u8, u32 } from "../../src/bpf/codec.js";
import type { MapLayout } from "../../src/bpf/map.js";
import { type PacketCounter, packetCounter } from "../../src/bpf/shared.js";

/** enum nk_direction */
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
export type HookCounter = PacketCounter;

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

export const hookCounter: StructCodec<HookCounter> = packetCounter("nk_hook_counter");

/** Name of the hook counter map in bpf/test/counter.bpf.c (pinned by name under the pin root). */
export const HOOK_COUNTERS_MAP = "nk_hook_counters";

/** Every struct codec mirrored from nkit_test.h, for the BTF layout test. */
export const TEST_STRUCTS: readonly StructCodec<unknown>[] = [
  hookKey as StructCodec<unknown>,
  hookCounter as StructCodec<unknown>,
];

/** The counter fixture's map as its tests open it. */
export const COUNTER_MAP_LAYOUTS: readonly MapLayout[] = [
  { name: HOOK_COUNTERS_MAP, type: "percpu_hash", keySize: hookKey.size, valueSize: hookCounter.size },
];
