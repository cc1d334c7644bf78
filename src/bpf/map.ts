// Typed access to BPF maps. Keys and values go through codecs; per-CPU maps read and write one
// value per possible CPU (PerCpuMap). Handles are owned fds, independent of the loading object.
import { AlreadyExistsError, InvalidArgumentError, NotFoundError } from "../errors.js";
import { bpfAddon, type FdHandle, type NativeBatch, type NativeMapInfo } from "../native/bpf.js";
import { type Codec, u32 } from "./codec.js";
import { BPF } from "./constants.js";
import { nativeCall, toBpfError } from "./errors.js";
import { OwnedFd, openPinned } from "./handle.js";

export type MapInfo = NativeMapInfo;

/** BPF_ANY (create or replace), BPF_NOEXIST (create only), BPF_EXIST (replace only). */
type UpdateMode = "any" | "noexist" | "exist";

const UPDATE_FLAGS: Record<UpdateMode, number> = { any: BPF.ANY, noexist: BPF.NOEXIST, exist: BPF.EXIST };

interface BatchOptions {
  /** Entries per syscall (grown automatically when a hash bucket holds more). Default 256. */
  batchSize?: number;
}

/** Type, sizes and limits of the map pinned at path (opened and closed again). */
export function pinnedMapInfo(path: string): MapInfo {
  const fd = new OwnedFd(openPinned(path, "map"), `BPF map ${path}`);
  try {
    return nativeCall(`reading info of BPF map ${path}`, () => bpfAddon().mapInfo(fd.handle));
  } finally {
    fd.close();
  }
}

abstract class MapBase<K, V> {
  readonly name: string;
  readonly info: MapInfo;
  protected readonly keyCodec: Codec<K>;
  readonly #fd: OwnedFd;

  protected constructor(handle: FdHandle, keyCodec: Codec<K>, label: string) {
    this.#fd = new OwnedFd(handle, `BPF map ${label}`);
    this.info = nativeCall(`reading info of BPF map ${label}`, () => bpfAddon().mapInfo(handle));
    this.name = label;
    this.keyCodec = keyCodec;
    if (keyCodec.size !== this.info.keySize) {
      this.close();
      throw new InvalidArgumentError(
        `BPF map ${label}: key codec is ${keyCodec.size} bytes but the map's keys are ${this.info.keySize}`,
      );
    }
  }

  protected abstract encodeValue(value: V): Buffer;
  protected abstract decodeValue(raw: Buffer, offset: number): V;

  get handle(): FdHandle {
    return this.#fd.handle;
  }

  get closed(): boolean {
    return this.#fd.closed;
  }

  /** The value for key, or undefined when absent. */
  lookup(key: K): V | undefined {
    const k = this.keyCodec.encode(key);
    const raw = nativeCall(`looking up a key in BPF map ${this.name}`, () =>
      bpfAddon().mapLookup(this.handle, k),
    );
    return raw === null ? undefined : this.decodeValue(raw, 0);
  }

  has(key: K): boolean {
    return this.lookup(key) !== undefined;
  }

  update(key: K, value: V, mode: UpdateMode = "any"): void {
    const k = this.keyCodec.encode(key);
    const v = this.encodeValue(value);
    try {
      bpfAddon().mapUpdate(this.handle, k, v, UPDATE_FLAGS[mode]);
    } catch (e) {
      const err = toBpfError(e, `updating BPF map ${this.name} (mode ${mode})`);
      if (err instanceof AlreadyExistsError) {
        throw new AlreadyExistsError(`BPF map ${this.name}: the key already exists (update mode "noexist")`, {
          cause: e,
        });
      }
      if (err instanceof NotFoundError) {
        throw new NotFoundError(`BPF map ${this.name}: the key does not exist (update mode "exist")`, {
          cause: e,
        });
      }
      throw err;
    }
  }

  /** True if the key was present. */
  delete(key: K): boolean {
    const k = this.keyCodec.encode(key);
    return nativeCall(`deleting a key from BPF map ${this.name}`, () => bpfAddon().mapDelete(this.handle, k));
  }

  /** Iterates keys with BPF_MAP_GET_NEXT_KEY. Concurrent deletes may restart a hash map walk. */
  *keys(): IterableIterator<K> {
    let prev: Buffer | null = null;
    for (;;) {
      const cur: Buffer | null = prev;
      const next: Buffer | null = nativeCall(`iterating BPF map ${this.name}`, () =>
        bpfAddon().mapNextKey(this.handle, cur),
      );
      if (next === null) return;
      yield this.keyCodec.decode(next);
      prev = next;
    }
  }

  /** Iterates entries; keys deleted between the key walk and the lookup are skipped. */
  *entries(): IterableIterator<[K, V]> {
    let prev: Buffer | null = null;
    const addon = bpfAddon();
    for (;;) {
      const cur: Buffer | null = prev;
      const next: Buffer | null = nativeCall(`iterating BPF map ${this.name}`, () =>
        addon.mapNextKey(this.handle, cur),
      );
      if (next === null) return;
      const raw = nativeCall(`looking up a key in BPF map ${this.name}`, () =>
        addon.mapLookup(this.handle, next),
      );
      if (raw !== null) yield [this.keyCodec.decode(next), this.decodeValue(raw, 0)];
      prev = next;
    }
  }

  [Symbol.iterator](): IterableIterator<[K, V]> {
    return this.entries();
  }

  /** All entries through BPF_MAP_LOOKUP_BATCH (one syscall per batch instead of two per entry). */
  lookupBatch(opts: BatchOptions = {}): [K, V][] {
    return this.#batch(false, opts);
  }

  /** Reads and removes all entries (BPF_MAP_LOOKUP_AND_DELETE_BATCH; hash maps only). */
  lookupAndDeleteBatch(opts: BatchOptions = {}): [K, V][] {
    return this.#batch(true, opts);
  }

  #batch(del: boolean, opts: BatchOptions): [K, V][] {
    const addon = bpfAddon();
    const out: [K, V][] = [];
    const size = opts.batchSize ?? 256;
    let token: Buffer | null = null;
    const { keySize, valueLen } = this.info;
    for (;;) {
      const t: Buffer | null = token;
      const b: NativeBatch = nativeCall(
        `batch ${del ? "lookup-and-delete" : "lookup"} on BPF map ${this.name}`,
        () => addon.mapLookupBatch(this.handle, t, size, del),
      );
      for (let i = 0; i < b.count; i++) {
        out.push([this.keyCodec.decode(b.keys, i * keySize), this.decodeValue(b.values, i * valueLen)]);
      }
      if (b.done) return out;
      token = b.token;
    }
  }

  /** Creates or replaces all entries with one BPF_MAP_UPDATE_BATCH; returns how many were written.
   * (The kernel takes no per-element NOEXIST/EXIST in batches; use update() for those.) */
  updateBatch(entries: Iterable<readonly [K, V]>): number {
    const list = [...entries];
    if (list.length === 0) return 0;
    const { keySize, valueLen } = this.info;
    const keys = Buffer.alloc(list.length * keySize);
    const values = Buffer.alloc(list.length * valueLen);
    list.forEach(([k, v], i) => {
      this.keyCodec.write(k, keys, i * keySize);
      this.encodeValue(v).copy(values, i * valueLen);
    });
    return nativeCall(`batch update of BPF map ${this.name}`, () =>
      bpfAddon().mapUpdateBatch(this.handle, keys, values, 0),
    );
  }

  /** Deletes the keys in one BPF_MAP_DELETE_BATCH; a missing key fails the rest of the batch (NotFoundError). */
  deleteBatch(keys: Iterable<K>): number {
    const list = [...keys];
    if (list.length === 0) return 0;
    const buf = Buffer.alloc(list.length * this.info.keySize);
    list.forEach((k, i) => {
      this.keyCodec.write(k, buf, i * this.info.keySize);
    });
    return nativeCall(`batch delete on BPF map ${this.name}`, () =>
      bpfAddon().mapDeleteBatch(this.handle, buf),
    );
  }

  pin(path: string): void {
    nativeCall(`pinning BPF map ${this.name} at ${path}`, () => bpfAddon().objPin(this.handle, path));
  }

  close(): void {
    this.#fd.close();
  }
}

/** A map with one value per key. */
export class BpfMap<K, V> extends MapBase<K, V> {
  protected readonly valueCodec: Codec<V>;

  /** Takes ownership of handle. Throws InvalidArgumentError if the codecs do not fit the map. */
  constructor(handle: FdHandle, keyCodec: Codec<K>, valueCodec: Codec<V>, label: string) {
    super(handle, keyCodec, label);
    this.valueCodec = valueCodec;
    if (this.info.percpu) {
      this.close();
      throw new InvalidArgumentError(
        `BPF map ${label} is per-CPU (${this.info.typeName}): open it as a PerCpuMap`,
      );
    }
    if (valueCodec.size !== this.info.valueSize) {
      this.close();
      throw new InvalidArgumentError(
        `BPF map ${label}: value codec is ${valueCodec.size} bytes but the map's values are ${this.info.valueSize}`,
      );
    }
  }

  static fromPin<K, V>(path: string, keyCodec: Codec<K>, valueCodec: Codec<V>): BpfMap<K, V> {
    return new BpfMap(openPinned(path, "map"), keyCodec, valueCodec, path);
  }

  /** A new array map of this process, not pinned: the inner maps of a MapOfMaps. */
  static createArray<V>(
    name: string,
    valueCodec: Codec<V>,
    maxEntries: number,
    flags = 0,
  ): BpfMap<number, V> {
    const handle = nativeCall(`creating BPF array map ${name}`, () =>
      bpfAddon().mapCreate(BPF.MAP_TYPE_ARRAY, 4, valueCodec.size, maxEntries, name, flags),
    );
    return new BpfMap(handle, u32, valueCodec, name);
  }

  protected encodeValue(value: V): Buffer {
    return this.valueCodec.encode(value);
  }

  protected decodeValue(raw: Buffer, offset: number): V {
    return this.valueCodec.decode(raw, offset);
  }
}

/** A per-CPU map: values are arrays with one element per possible CPU (index = CPU number). */
export class PerCpuMap<K, V> extends MapBase<K, V[]> {
  protected readonly valueCodec: Codec<V>;
  readonly cpus: number;
  readonly #stride: number;

  constructor(handle: FdHandle, keyCodec: Codec<K>, valueCodec: Codec<V>, label: string) {
    super(handle, keyCodec, label);
    this.valueCodec = valueCodec;
    if (!this.info.percpu) {
      this.close();
      throw new InvalidArgumentError(
        `BPF map ${label} is not per-CPU (${this.info.typeName}): open it as a BpfMap`,
      );
    }
    if (valueCodec.size !== this.info.valueSize) {
      this.close();
      throw new InvalidArgumentError(
        `BPF map ${label}: value codec is ${valueCodec.size} bytes but the map's values are ${this.info.valueSize}`,
      );
    }
    // the kernel lays per-CPU values out 8-byte aligned
    this.#stride = Math.ceil(this.info.valueSize / 8) * 8;
    this.cpus = this.info.valueLen / this.#stride;
  }

  static fromPin<K, V>(path: string, keyCodec: Codec<K>, valueCodec: Codec<V>): PerCpuMap<K, V> {
    return new PerCpuMap(openPinned(path, "map"), keyCodec, valueCodec, path);
  }

  /** The same value on every CPU, e.g. zeroes to reset a counter. */
  fill(value: V): V[] {
    return new Array<V>(this.cpus).fill(value);
  }

  protected encodeValue(values: V[]): Buffer {
    if (values.length !== this.cpus) {
      throw new InvalidArgumentError(
        `BPF map ${this.name}: per-CPU value needs ${this.cpus} elements (possible CPUs), got ${values.length}`,
      );
    }
    const b = Buffer.alloc(this.info.valueLen);
    values.forEach((v, i) => {
      this.valueCodec.write(v, b, i * this.#stride);
    });
    return b;
  }

  protected decodeValue(raw: Buffer, offset: number): V[] {
    return Array.from({ length: this.cpus }, (_, i) =>
      this.valueCodec.decode(raw, offset + i * this.#stride),
    );
  }
}

/**
 * A map of maps (hash or array of maps). Lookups give the inner map's id; set() puts a map in, and
 * the kernel holds the inner map from then on, so the caller may close its handle.
 */
export class MapOfMaps<K> extends BpfMap<K, number> {
  static open<K>(path: string, keyCodec: Codec<K>): MapOfMaps<K> {
    return new MapOfMaps(openPinned(path, "map"), keyCodec, u32, path);
  }

  /**
   * Whether an inner map of the given flags and size may be put in (the kernel compares it with the
   * outer map's inner template: flags always, the size unless the template has BPF_F_INNER_MAP).
   * Tried with `probeKey`, removed again.
   */
  accepts(probeKey: K, flags: number, maxEntries: number): boolean {
    const probe = BpfMap.createArray("nk_probe", u32, maxEntries, flags);
    try {
      this.set(probeKey, probe);
      this.delete(probeKey);
      return true;
    } catch {
      return false;
    } finally {
      probe.close();
    }
  }

  set(key: K, inner: MapBase<number, unknown>, mode: UpdateMode = "any"): void {
    const k = this.keyCodec.encode(key);
    nativeCall(`putting map ${inner.name} into BPF map ${this.name}`, () =>
      bpfAddon().mapUpdateInner(this.handle, k, inner.handle, UPDATE_FLAGS[mode]),
    );
  }
}
