// TS side of bpf/test/nkit_test.h, the structs of the BPF test fixtures (bpf/test/counter.bpf.c,
// bpf/test/maps.bpf.c): their codecs are generated from the fixtures' BTF like the product's, and
// so are the fixtures' skeletons (test/helpers/gen/<fixture>.skel.ts).

import { counterObject } from "./gen/counter.skel.js";
import * as abi from "./gen/nkit_test.js";

/** enum nk_direction */
export const Direction = { INGRESS: 0, EGRESS: 1 } as const;
export type Direction = (typeof Direction)[keyof typeof Direction];

/** Which program produced a counter entry (enum nk_hook_slot). */
export const HookSlot = { PRIMARY: 0, ALTERNATE: 1 } as const;
export type HookSlot = (typeof HookSlot)[keyof typeof HookSlot];

// The structs, as generated from the fixtures' BTF (test/helpers/gen/nkit_test.ts).
export type HookKey = abi.NkHookKey;
/** struct nk_hook_counter (one per CPU in the map) */
export type HookCounter = abi.NkHookCounter;
export const hookKey = abi.nkHookKey;
export const hookCounter = abi.nkHookCounter;

/** Name of the hook counter map in bpf/test/counter.bpf.c (pinned by name under the pin root). */
export const HOOK_COUNTERS_MAP = counterObject.maps.nk_hook_counters.name;

/** Every struct of nkit_test.h, for the BTF layout test. */
export const TEST_STRUCTS = abi.STRUCTS;
