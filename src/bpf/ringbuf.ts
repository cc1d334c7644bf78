// A consumer of a pinned BPF_MAP_TYPE_RINGBUF: the addon's background thread drains the ring and
// hands batches to the JS thread, which receives them here split into records.
import { type RingbufHandle, ringbufAddon, splitRecords } from "../native/ringbuf.js";
import { nativeCall } from "./errors.js";
import { OwnedFd, openPinned } from "./handle.js";

/** Gets the records of one batch (views valid only during the call) and how many records were
 * lost since the previous batch because the consumer fell behind. */
export type RingRecords = (records: Buffer[], lost: number) => void;

export class RingBuffer {
  readonly #map: OwnedFd;
  #rb: RingbufHandle | undefined;

  private constructor(map: OwnedFd, rb: RingbufHandle) {
    this.#map = map;
    this.#rb = rb;
  }

  /** Starts consuming the ring pinned at path. */
  static fromPin(path: string, onRecords: RingRecords): RingBuffer {
    const map = new OwnedFd(openPinned(path, "map"), `BPF ring buffer ${path}`);
    try {
      const rb = nativeCall(`consuming BPF ring buffer ${path}`, () =>
        ringbufAddon().ringbufOpen(map.handle, (batch, _records, lost) =>
          onRecords(splitRecords(batch), lost),
        ),
      );
      return new RingBuffer(map, rb);
    } catch (e) {
      map.close();
      throw e;
    }
  }

  get closed(): boolean {
    return this.#rb === undefined;
  }

  /** Stops the consumer; nothing is delivered afterwards. Idempotent. */
  close(): void {
    if (this.#rb) ringbufAddon().ringbufClose(this.#rb);
    this.#rb = undefined;
    this.#map.close();
  }
}
