// TS side of bpf/include/nkit_nat.h: the masquerade maps of the datapath object. Struct sizes and
// offsets are checked against the BTF of bpf/build/datapath.bpf.o (test/unit/bpf-shared-btf.test.ts).
import { bytes, type StructCodec, struct, u8, u16, u32 } from "./codec.js";
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

/** struct nk_nat_config */
export interface NatConfig {
  flags: number;
  port_min: number;
  port_max: number;
}

/** struct nk_nat_device */
export interface NatDevice {
  flags: number;
  addr4: Buffer;
  addr6: Buffer;
}

export const natConfig: StructCodec<NatConfig> = struct<NatConfig>({
  name: "nk_nat_config",
  size: 8,
  fields: {
    flags: { offset: 0, codec: u32 },
    port_min: { offset: 4, codec: u16 },
    port_max: { offset: 6, codec: u16 },
  },
});

export const natDevice: StructCodec<NatDevice> = struct<NatDevice>({
  name: "nk_nat_device",
  size: 24,
  fields: {
    flags: { offset: 0, codec: u32 },
    addr4: { offset: 4, codec: bytes(4) },
    addr6: { offset: 8, codec: bytes(16) },
  },
});

export const NAT_STRUCTS: readonly StructCodec<unknown>[] = [
  natConfig as StructCodec<unknown>,
  natDevice as StructCodec<unknown>,
  prefixKey as StructCodec<unknown>,
];

export const NAT_MAP_LAYOUTS: readonly MapLayout[] = [
  { name: NatMap.config, type: "array", keySize: u32.size, valueSize: natConfig.size },
  { name: NatMap.devices, type: "hash", keySize: u32.size, valueSize: natDevice.size },
  { name: NatMap.exclude, type: "lpm_trie", keySize: prefixKey.size, valueSize: u8.size },
];
