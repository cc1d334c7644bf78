// TS side of bpf/include/nkit_shared.h: what every nkit BPF object shares. Each header of its own
// has its TS codecs in src/bpf/<name>.ts (nkit_datapath.h: datapath.ts).
import { type StructCodec, struct, u64 } from "./codec.js";

/** Address family tag (NK_FAMILY_V4/V6) of map keys and values that hold a 16-byte address. */
export const Family = { V4: 4, V6: 6 } as const;

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
