// TS side of bpf/include/nkit_nat.h: masquerade's settings, devices and conntrack directions. The
// struct codecs are generated from the objects' BTF (src/bpf/gen, `npm run build:abi`), as is which
// map of the datapath object holds which (src/bpf/gen/datapath.skel.ts).
import type * as abi from "./gen/nkit_nat.js";

export const NatFlags = { V4: 0x1, V6: 0x2 } as const;

/** NK_CT_SNAT_*: directions of masqueraded flows in nk_lb_ct. */
export const NatCtDir = { OUT: 2, IN: 3 } as const;

// The structs, as generated from the objects' BTF (src/bpf/gen/nkit_nat.ts).
export type NatConfig = abi.NkNatConfig;
export type NatDevice = abi.NkNatDevice;
