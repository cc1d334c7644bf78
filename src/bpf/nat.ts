// TS side of bpf/include/nkit_nat.h: the masquerade maps of the datapath object. The struct codecs
// are generated from the objects' BTF (src/bpf/gen, `npm run build:abi`); the maps are checked
// against bpf/build/datapath.bpf.o (test/unit/bpf-shared-btf.test.ts).
import { u8, u32 } from "./codec.js";
import * as abi from "./gen/nkit_nat.js";
import type { MapLayout } from "./map.js";
import { prefixKey } from "./shared.js";

export const NatMap = {
  config: "nk_nat_config",
  devices: "nk_nat_devices",
  exclude: "nk_nat_exclude",
} as const;

export const NatFlags = { V4: 0x1, V6: 0x2 } as const;

/** NK_CT_SNAT_*: directions of masqueraded flows in nk_lb_ct. */
export const NatCtDir = { OUT: 2, IN: 3 } as const;

// The structs, as generated from the objects' BTF (src/bpf/gen/nkit_nat.ts).
export type NatConfig = abi.NkNatConfig;
export type NatDevice = abi.NkNatDevice;
export const natConfig = abi.nkNatConfig;
export const natDevice = abi.nkNatDevice;

export const NAT_MAP_LAYOUTS: readonly MapLayout[] = [
  { name: NatMap.config, type: "array", keySize: u32.size, valueSize: natConfig.size },
  { name: NatMap.devices, type: "hash", keySize: u32.size, valueSize: natDevice.size },
  { name: NatMap.exclude, type: "lpm_trie", keySize: prefixKey.size, valueSize: u8.size },
];
