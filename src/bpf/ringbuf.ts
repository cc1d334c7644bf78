// BPF_MAP_TYPE_RINGBUF maps and their consumers: the addon's background thread drains the ring and
// hands batches to the JS thread, which receives them here split into records. The map handle and
// the consumer live apart (the consumer holds its own dup of the fd), so an owner can start and stop
// consuming a ring it keeps, such as the one the loaded datapath object hands out.
import { InvalidArgumentError } from "../errors.js";
import { bpfAddon, type FdHandle } from "../native/bpf.js";
import { type RingbufHandle, ringbufAddon, splitRecords } from "../native/ringbuf.js";
import { nativeCall } from "./errors.js";
import { OwnedFd, openPinned } from "./handle.js";
import type { MapInfo } from "./map.js";

/** Gets the records of one batch (views valid only during the call) and how many records were
 * lost since the previous batch because the consumer fell behind. */
type RingRecords = (records: Buffer[], lost: number) => void;

/** A ring buffer map (an owned fd): no entries to look up, only records to consume. */
export class RingBufferMap {
  readonly name: string;
  readonly info: MapInfo;
  readonly #fd: OwnedFd;

  /** Takes ownership of handle. Throws InvalidArgumentError (closing it) if the map is no ring. */
  constructor(handle: FdHandle, label: string) {
    this.#fd = new OwnedFd(handle, `BPF ring buffer ${label}`);
    this.name = label;
    this.info = nativeCall(`reading info of BPF map ${label}`, () => bpfAddon().mapInfo(handle));
    if (this.info.typeName !== "ringbuf") {
      this.close();
      throw new InvalidArgumentError(
        `BPF map ${label} is a ${this.info.typeName} map, not a BPF_MAP_TYPE_RINGBUF`,
      );
    }
  }

  static fromPin(path: string): RingBufferMap {
    return new RingBufferMap(openPinned(path, "map"), path);
  }

  get handle(): FdHandle {
    return this.#fd.handle;
  }

  get closed(): boolean {
    return this.#fd.closed;
  }

  /** Starts a consumer of the ring; it outlives this handle until closed itself. */
  consume(onRecords: RingRecords): RingBuffer {
    return RingBuffer.consume(this, onRecords);
  }

  close(): void {
    this.#fd.close();
  }
}

/** A running consumer of a ring buffer map. */
export class RingBuffer {
  #rb: RingbufHandle | undefined;

  private constructor(rb: RingbufHandle) {
    this.#rb = rb;
  }

  /** Starts consuming the ring `map` holds (the map handle stays the caller's). */
  static consume(map: RingBufferMap, onRecords: RingRecords): RingBuffer {
    const rb = nativeCall(`consuming BPF ring buffer ${map.name}`, () =>
      ringbufAddon().ringbufOpen(map.handle, (batch, _records, lost) => onRecords(splitRecords(batch), lost)),
    );
    return new RingBuffer(rb);
  }

  /** Starts consuming the ring pinned at path. */
  static fromPin(path: string, onRecords: RingRecords): RingBuffer {
    const map = RingBufferMap.fromPin(path);
    try {
      return RingBuffer.consume(map, onRecords);
    } finally {
      map.close();
    }
  }

  get closed(): boolean {
    return this.#rb === undefined;
  }

  /** Stops the consumer; nothing is delivered afterwards. Idempotent. */
  close(): void {
    if (this.#rb) ringbufAddon().ringbufClose(this.#rb);
    this.#rb = undefined;
  }
}
