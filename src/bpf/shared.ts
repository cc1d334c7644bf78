// TS side of bpf/include/nkit_shared.h: what every nkit BPF object shares. Each header of its own
// has its TS codecs in src/bpf/<name>.ts (nkit_datapath.h: datapath.ts).
import { parsePrefix } from "../util/ip.js";
import { bytes, type StructCodec, struct, u8, u32, u64 } from "./codec.js";

/** Address family tag (NK_FAMILY_V4/V6) of map keys and values that hold a 16-byte address. */
export const Family = { V4: 4, V6: 6 } as const;

/** struct nk_prefix_key: the key of every LPM trie over addresses (prefixlen includes 32 bits of family). */
export interface PrefixKey {
  prefixlen: number;
  family: number;
  addr: Buffer;
}

export const prefixKey: StructCodec<PrefixKey> = struct<PrefixKey>({
  name: "nk_prefix_key",
  size: 24,
  fields: {
    prefixlen: { offset: 0, codec: u32 },
    family: { offset: 4, codec: u8 },
    addr: { offset: 8, codec: bytes(16) },
  },
  padding: [{ name: "pad", offset: 5, size: 3 }],
});

/** The trie key of a CIDR ("10.96.0.0/16", "fd96::/112"). */
export function prefixKeyOf(cidr: string): PrefixKey {
  const p = parsePrefix(cidr);
  const addr = Buffer.alloc(16);
  p.bytes.copy(addr);
  return { prefixlen: 32 + p.prefixLength, family: p.family === 4 ? Family.V4 : Family.V6, addr };
}

/** Makes a trie hold exactly `cidrs` (entries not wanted removed first, the rest written). */
export function syncPrefixSet(
  trie: {
    keys(): Iterable<PrefixKey>;
    delete(k: PrefixKey): unknown;
    update(k: PrefixKey, v: number): unknown;
  },
  cidrs: readonly string[],
): void {
  const hex = (k: PrefixKey) => prefixKey.encode(k).toString("hex");
  const want = new Map(cidrs.map((c) => [hex(prefixKeyOf(c)), prefixKeyOf(c)]));
  for (const k of [...trie.keys()]) if (!want.has(hex(k))) trie.delete(k);
  for (const k of want.values()) trie.update(k, 1);
}

/** The value of every per-CPU packet counter ({u64 packets; u64 bytes}), one per CPU in a map. */
export interface PacketCounter {
  packets: bigint;
  bytes: bigint;
}

/** The codec of a {u64 packets; u64 bytes} struct named `name` in its header. */
export function packetCounter(name: string): StructCodec<PacketCounter> {
  return struct<PacketCounter>({
    name,
    size: 16,
    fields: { packets: { offset: 0, codec: u64 }, bytes: { offset: 8, codec: u64 } },
  });
}

/** Sums per-CPU counters. */
export function sumCounters(perCpu: readonly PacketCounter[]): PacketCounter {
  let packets = 0n;
  let bytes = 0n;
  for (const c of perCpu) {
    packets += c.packets;
    bytes += c.bytes;
  }
  return { packets, bytes };
}
