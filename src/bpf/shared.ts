// TS side of bpf/include/nkit_shared.h: what every nkit BPF object shares. Each header's struct
// codecs are generated from the objects' BTF into src/bpf/gen/<header>.ts; src/bpf/<name>.ts
// (nkit_datapath.h: datapath.ts) names them and adds the constants. Which map holds which struct
// is generated too, per object (src/bpf/gen/<object>.skel.ts).
import { IpAddress, type IpPrefix } from "../util/ip.js";
import * as abi from "./gen/nkit_shared.js";

/** Address family tag (NK_FAMILY_V4/V6) of map keys and values that hold a 16-byte address. */
const Family = { V4: 4, V6: 6 } as const;

/** struct nk_prefix_key: the key of every LPM trie over addresses (prefixlen includes 32 bits of family). */
export type PrefixKey = abi.NkPrefixKey;
const prefixKey = abi.nkPrefixKey;

/** An address as every map key and value holds it: a family tag and 16 bytes, IPv4 in the first 4. */
export interface MapAddress {
  family: number;
  addr: Buffer;
}

/** The map form of an address: every key and value that holds one is written from this. */
export function mapAddress(ip: IpAddress): MapAddress {
  const addr = Buffer.alloc(16);
  ip.toBytes().copy(addr);
  return { family: ip.family === 4 ? Family.V4 : Family.V6, addr };
}

/** The text of a map address (the bytes in hex when the family tag is neither). */
export function mapAddressText(family: number, addr: Buffer): string {
  if (family === Family.V4) return IpAddress.fromBytes(addr.subarray(0, 4)).text;
  if (family === Family.V6) return IpAddress.fromBytes(addr.subarray(0, 16)).text;
  return addr.toString("hex");
}

/** The trie key of a prefix; the kernel matches only the first prefixlen bits, so host bits are
 * dropped here to keep one key per network (syncPrefixSet compares keys byte for byte). */
export function prefixKeyOf(p: IpPrefix): PrefixKey {
  return { prefixlen: 32 + p.prefixLength, ...mapAddress(p.network) };
}

/** Makes a trie hold exactly `prefixes` (entries not wanted removed first, the rest written). */
export function syncPrefixSet(
  trie: {
    keys(): Iterable<PrefixKey>;
    delete(k: PrefixKey): unknown;
    update(k: PrefixKey, v: number): unknown;
  },
  prefixes: readonly IpPrefix[],
): void {
  const hex = (k: PrefixKey) => prefixKey.encode(k).toString("hex");
  const want = new Map(prefixes.map((p) => [hex(prefixKeyOf(p)), prefixKeyOf(p)]));
  for (const k of [...trie.keys()]) if (!want.has(hex(k))) trie.delete(k);
  for (const k of want.values()) trie.update(k, 1);
}

/** The value of every per-CPU packet counter ({u64 packets; u64 bytes}), one per CPU in a map. */
export interface PacketCounter {
  packets: bigint;
  bytes: bigint;
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
