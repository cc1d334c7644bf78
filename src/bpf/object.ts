// A BPF object file loaded through libbpf. Maps marked LIBBPF_PIN_BY_NAME are pinned under (and
// reused from) pinRoot, which is how state survives an nkitd restart. Programs and maps handed out
// are dups of the object's fds, owned by the BpfObject until it is closed.
import { existsSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { AlreadyExistsError, BpfLoadError, InvalidArgumentError, NotFoundError } from "../errors.js";
import {
  bpfAddon,
  type FdHandle,
  type NativeMapSpec,
  type NativeProgramSpec,
  type ObjHandle,
} from "../native/bpf.js";
import { packageFile } from "../package-files.js";
import { type Codec, u32 } from "./codec.js";
import { nativeCall, toLoadError } from "./errors.js";
import { BpfMap, MapOfMaps, PerCpuMap, pinnedMapInfo } from "./map.js";
import type { MapSource } from "./map-source.js";
import { ensureBpffsDir } from "./pins.js";
import { BpfProgram } from "./program.js";
import { RingBufferMap } from "./ringbuf.js";

type ProgramSpec = NativeProgramSpec;
export type MapSpec = NativeMapSpec;

export interface BpfObjectOptions {
  /** Directory (on bpffs) for LIBBPF_PIN_BY_NAME maps; created if missing. Default: libbpf's /sys/fs/bpf. */
  pinRoot?: string;
  /** Object name reported by libbpf (defaults to the file name). */
  name?: string;
  /**
   * Pinned maps (by name) whose contents can be rebuilt, such as counters: a pin an older build left
   * with another type, size or capacity is removed and the map created anew. Any other pinned map
   * that no longer fits fails the load with an error naming it (libbpf would only say "mismatch").
   */
  recreatable?: readonly string[];
  /**
   * Capacities (max entries) by map name, from configuration. A pinned map of another capacity is
   * made anew with this one (its entries are lost; BpfObject.resized names it), so a changed size
   * takes effect at the next start.
   */
  sizes?: Readonly<Record<string, number>>;
}

interface Closable {
  close(): void;
}

export class BpfObject implements MapSource {
  readonly path: string;
  #obj: ObjHandle | undefined;
  #loaded = false;
  readonly #programs = new Map<string, BpfProgram>();
  readonly #children: Closable[] = [];

  private constructor(path: string, obj: ObjHandle) {
    this.path = path;
    this.#obj = obj;
  }

  /** Parses the ELF without loading anything into the kernel (see load()). */
  static open(path: string, opts: BpfObjectOptions = {}): BpfObject {
    if (!existsSync(path)) {
      throw new NotFoundError(`BPF object ${path} does not exist (run \`npm run build:bpf\`?)`);
    }
    if (opts.pinRoot !== undefined) ensureBpffsDir(opts.pinRoot);
    const nativeOpts: { pinRoot?: string; name?: string } = {};
    if (opts.pinRoot !== undefined) nativeOpts.pinRoot = opts.pinRoot;
    if (opts.name !== undefined) nativeOpts.name = opts.name;
    try {
      return new BpfObject(path, bpfAddon().objOpen(path, nativeOpts));
    } catch (e) {
      throw toLoadError(e, path);
    }
  }

  /** open() + load(). Throws BpfLoadError with libbpf's and the verifier's log. */
  static load(path: string, opts: BpfObjectOptions = {}): BpfObject {
    const o = BpfObject.open(path, opts);
    try {
      for (const [name, n] of Object.entries(opts.sizes ?? {})) {
        if (o.maps().some((m) => m.name === name)) {
          nativeCall(`sizing map ${name} of ${path}`, () => bpfAddon().objSetMapSize(o.#handle, name, n));
        }
      }
      o.checkPins(opts.recreatable ?? [], Object.keys(opts.sizes ?? {}));
      o.load();
    } catch (e) {
      o.close();
      throw e;
    }
    return o;
  }

  get #handle(): ObjHandle {
    if (!this.#obj) throw new InvalidArgumentError(`BPF object ${this.path} is closed`);
    return this.#obj;
  }

  get loaded(): boolean {
    return this.#loaded;
  }

  /** Pinned maps checkPins removed because their capacity changed (see BpfObjectOptions.sizes). */
  readonly resized: { name: string; from: number; to: number }[] = [];

  /**
   * Removes or refuses pinned maps this object cannot reuse (see BpfObjectOptions.recreatable);
   * `sized` maps whose only difference is their capacity are made anew.
   */
  checkPins(recreatable: readonly string[], sized: readonly string[] = []): void {
    for (const spec of this.maps()) {
      if (!spec.pinPath || spec.maxEntries === 0 || !existsSync(spec.pinPath)) continue;
      const have = pinnedMapInfo(spec.pinPath);
      const differs = (
        [
          ["type", have.typeName, spec.typeName],
          ["key size", have.keySize, spec.keySize],
          ["value size", have.valueSize, spec.valueSize],
          ["max entries", have.maxEntries, spec.maxEntries],
        ] as const
      ).filter(([, a, b]) => a !== b);
      if (differs.length === 0) continue;
      if (differs.length === 1 && differs[0]?.[0] === "max entries" && sized.includes(spec.name)) {
        rmSync(spec.pinPath);
        this.resized.push({ name: spec.name, from: have.maxEntries, to: spec.maxEntries });
        continue;
      }
      if (recreatable.includes(spec.name)) {
        rmSync(spec.pinPath);
        continue;
      }
      const what = differs.map(([k, a, b]) => `${k} ${a} pinned, ${b} wanted`).join(", ");
      throw new BpfLoadError(
        this.path,
        `the pinned map ${spec.pinPath} no longer fits (${what}): remove the pin (its contents are lost) or keep the configuration it was made with`,
        "",
      );
    }
  }

  /** Creates (or reuses pinned) maps and loads the programs. */
  load(): void {
    try {
      bpfAddon().objLoad(this.#handle);
    } catch (e) {
      throw toLoadError(e, this.path);
    }
    this.#loaded = true;
  }

  programs(): ProgramSpec[] {
    return bpfAddon().objPrograms(this.#handle);
  }

  maps(): MapSpec[] {
    return bpfAddon().objMaps(this.#handle);
  }

  /** A loaded program by its C function name. */
  program(name: string): BpfProgram {
    const cached = this.#programs.get(name);
    if (cached && !cached.closed) return cached;
    const h = nativeCall(`getting program ${name} of ${this.path}`, () =>
      bpfAddon().objProgram(this.#handle, name),
    );
    const p = new BpfProgram(h, name);
    this.#programs.set(name, p);
    return p;
  }

  /** A map by name with codecs; throws InvalidArgumentError when the codecs' sizes do not fit. */
  map<K, V>(name: string, keyCodec: Codec<K>, valueCodec: Codec<V>): BpfMap<K, V> {
    return this.#child(name, (h) => new BpfMap(h, keyCodec, valueCodec, name));
  }

  /** A map of maps by name (values are inner maps, set whole). */
  mapOfMaps<K>(name: string, keyCodec: Codec<K>): MapOfMaps<K> {
    return this.#child(name, (h) => new MapOfMaps(h, keyCodec, u32, name));
  }

  /** A per-CPU map by name (values are one V per possible CPU). */
  perCpuMap<K, V>(name: string, keyCodec: Codec<K>, valueCodec: Codec<V>): PerCpuMap<K, V> {
    return this.#child(name, (h) => new PerCpuMap(h, keyCodec, valueCodec, name));
  }

  /** A ring buffer map by name (consumed through RingBufferMap.consume). */
  ringBuffer(name: string): RingBufferMap {
    return this.#child(name, (h) => new RingBufferMap(h, name));
  }

  /** The handle `make` builds on map `name`'s fd, closed with this object. */
  #child<M extends Closable>(name: string, make: (h: FdHandle) => M): M {
    const h = nativeCall(`getting map ${name} of ${this.path}`, () => bpfAddon().objMap(this.#handle, name));
    const m = make(h);
    this.#children.push(m);
    return m;
  }

  /**
   * Pins again every LIBBPF_PIN_BY_NAME map whose pin was removed while this object held it (the
   * map lives on in the programs; without its pin the next load would make an empty one). Returns
   * the paths pinned again. A pin that is back meanwhile (another object sharing the map) is left.
   */
  repinMaps(): string[] {
    const done: string[] = [];
    for (const spec of this.maps()) {
      if (!spec.pinPath || existsSync(spec.pinPath)) continue;
      ensureBpffsDir(dirname(spec.pinPath));
      const h = nativeCall(`getting map ${spec.name} of ${this.path}`, () =>
        bpfAddon().objMap(this.#handle, spec.name),
      );
      try {
        nativeCall(`pinning BPF map ${spec.name} at ${spec.pinPath}`, () =>
          bpfAddon().objPin(h, spec.pinPath as string),
        );
        done.push(spec.pinPath);
      } catch (e) {
        if (!(e instanceof AlreadyExistsError)) throw e;
      } finally {
        bpfAddon().fdClose(h);
      }
    }
    return done;
  }

  /** Closes the object and every program/map handle obtained from it. Pinned maps and links stay. */
  close(): void {
    for (const p of this.#programs.values()) p.close();
    for (const c of this.#children) c.close();
    this.#programs.clear();
    this.#children.length = 0;
    if (this.#obj) bpfAddon().objClose(this.#obj);
    this.#obj = undefined;
  }
}

/** Layout of a struct as recorded in an object's BTF (null if the object has no such struct). */
/**
 * The path of a BPF object `npm run build:bpf` built (bpf/build/<file>), found from this module's
 * place in src/, dist/ or a compiled copy such as bench/dist/src.
 */
export function builtObjectPath(file: string): string {
  const found = packageFile(join("bpf", "build", file));
  if (!found) throw new NotFoundError(`bpf/build/${file} is missing: run \`npm run build:bpf\``);
  return found;
}

export function btfStructLayout(path: string, structName: string) {
  return nativeCall(`reading BTF of ${path}`, () => bpfAddon().btfStruct(path, structName));
}
