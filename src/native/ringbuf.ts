// Typed slice of the addon for the BPF ring buffer consumer (native/src/bpf_ringbuf.c): a
// background thread drains a BPF_MAP_TYPE_RINGBUF and hands batches of raw records to JS.
import { endianness } from "node:os";
import type { FdHandle } from "./bpf.js";
import { loadAddon } from "./load.js";

declare const rbBrand: unique symbol;

/** A running consumer; close it with ringbufClose (the GC and process exit also stop it). */
export interface RingbufHandle {
  readonly [rbBrand]: "nkit-ringbuf";
}

/**
 * Called on the JS thread with a batch framed as repeated [u32 length, host order][record], the
 * number of records in it, and how many records were lost since the previous batch (JS too slow).
 */
type RingbufBatchCallback = (batch: Buffer, records: number, lost: number) => void;

interface RingbufAddon {
  /** Starts consuming; the map handle stays owned by the caller (the consumer dups its fd). */
  ringbufOpen(map: FdHandle, onBatch: RingbufBatchCallback): RingbufHandle;
  /** Stops the thread, frees the ring, closes the fds; nothing is delivered afterwards. Idempotent. */
  ringbufClose(handle: RingbufHandle): void;
}

export function ringbufAddon(): RingbufAddon {
  return loadAddon() as RingbufAddon;
}

/** Splits a batch into its records (views into the batch buffer). */
const LE = endianness() === "LE";

export function splitRecords(batch: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  while (off + 4 <= batch.length) {
    const len = LE ? batch.readUInt32LE(off) : batch.readUInt32BE(off);
    if (off + 4 + len > batch.length) break;
    out.push(batch.subarray(off + 4, off + 4 + len));
    off += 4 + len;
  }
  return out;
}
