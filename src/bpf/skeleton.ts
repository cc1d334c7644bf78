// Typed handles of a BPF object's maps and programs, in the spirit of libbpf's skeletons and
// cilium/ebpf's bpf2go: `npm run build:abi` (bpf/gen-abi.mjs) describes every built object from the
// object itself (src/bpf/gen/<object>.skel.ts: each map's name, type and key and value codecs as
// its BTF types say, each program's name and section), and this module turns a description into
// handles. An owner then names a map as a typed property (maps.nk_endpoints is a
// BpfMap<NkEndpointKey, NkEndpoint>), so a map renamed or retyped on the C side fails the TS build
// instead of a lookup at run time, and no owner pairs a name with codecs by hand.
import type { Codec } from "./codec.js";
import type { BpfMap, MapOfMaps, PerCpuMap } from "./map.js";
import { type MapSource, PinnedMaps } from "./map-source.js";
import { BpfObject, type BpfObjectOptions, builtObjectPath } from "./object.js";
import type { BpfProgram } from "./program.js";
import type { RingBufferMap } from "./ringbuf.js";

interface MapDefBase {
  /** The map's name in the object, which is also its pin name. */
  readonly name: string;
  /** libbpf's type name: "hash", "lpm_trie", "percpu_array", "ringbuf", ... */
  readonly type: string;
  /** The object's own capacity (a loader may size the map otherwise: BpfObjectOptions.sizes). */
  readonly maxEntries: number;
  readonly flags: number;
  /** LIBBPF_PIN_BY_NAME: pinned under, and reused from, the loader's pin root. */
  readonly pinned: boolean;
}

/** A map of keys and values: one value per key (kind "plain") or one per CPU and key ("percpu"). */
interface KeyedMapDef<Kind extends MapKind, K, V> extends MapDefBase {
  readonly kind: Kind;
  readonly key: Codec<K>;
  readonly value: Codec<V>;
  /** BTF names of the key and value types (for the test against the built object). */
  readonly keyType: string;
  readonly valueType: string;
}

/** A map with one value per key (hash, array, LRU hash, LPM trie): a BpfMap. */
export type PlainMapDef<K, V> = KeyedMapDef<"plain", K, V>;

/** A map with one value per CPU and key: a PerCpuMap. */
export type PerCpuMapDef<K, V> = KeyedMapDef<"percpu", K, V>;

/** A map whose values are maps: a MapOfMaps. */
interface MapOfMapsDef<K> extends MapDefBase {
  readonly kind: "map-of-maps";
  readonly key: Codec<K>;
  readonly keyType: string;
}

/** A ring buffer: a RingBufferMap, no keys or values. */
interface RingBufferDef extends MapDefBase {
  readonly kind: "ringbuf";
}

export type MapDef =
  | PlainMapDef<unknown, unknown>
  | PerCpuMapDef<unknown, unknown>
  | MapOfMapsDef<unknown>
  | RingBufferDef;

export interface ProgramDef {
  readonly name: string;
  /** The ELF section, which tells libbpf the program type and where it attaches ("tc", "cgroup/connect4"). */
  readonly section: string;
  /** libbpf's program type name ("sched_cls", "cgroup_sock_addr"). */
  readonly type: string;
}

/** A built object as bpf/gen-abi.mjs describes it. */
export interface ObjectDef {
  /** Path under bpf/build. */
  readonly file: string;
  readonly maps: { readonly [name: string]: MapDef };
  readonly programs: { readonly [name: string]: ProgramDef };
}

/** The handle of each kind of map, given its key and value types. */
interface HandleOfKind<K, V> {
  plain: BpfMap<K, V>;
  percpu: PerCpuMap<K, V>;
  "map-of-maps": MapOfMaps<K>;
  ringbuf: RingBufferMap;
}

/** The kinds of handle; bpf/gen-abi.mjs gives every libbpf map type one (src/bpf/gen/map-kinds.ts). */
export type MapKind = keyof HandleOfKind<unknown, unknown>;

type KeyOf<D> = D extends { readonly key: Codec<infer K> } ? K : never;
type ValueOf<D> = D extends { readonly value: Codec<infer V> } ? V : never;

/** The handle type of a map description. */
export type MapHandle<D> = D extends { readonly kind: infer Kind extends MapKind }
  ? HandleOfKind<KeyOf<D>, ValueOf<D>>[Kind]
  : never;

export type MapHandles<M> = { readonly [N in keyof M]: MapHandle<M[N]> };
type ProgramHandles<P> = { readonly [N in keyof P]: BpfProgram };
export type MapName<O extends ObjectDef> = keyof O["maps"] & string;

type AnyHandle = { readonly closed: boolean; close(): void };

function openMap(source: MapSource, def: MapDef): AnyHandle {
  switch (def.kind) {
    case "plain":
      return source.map(def.name, def.key, def.value);
    case "percpu":
      return source.perCpuMap(def.name, def.key, def.value);
    case "map-of-maps":
      return source.mapOfMaps(def.name, def.key);
    case "ringbuf":
      return source.ringBuffer(def.name);
  }
}

/**
 * Typed handles of the described maps from `source`. Each is opened at its first use and kept, so
 * every read of the property gives the same handle: a map has one owner, and when that owner closes
 * it (Conntrack.close, say), the next read opens it anew rather than handing out a closed fd.
 */
export function openMaps<M extends ObjectDef["maps"]>(source: MapSource, maps: M): MapHandles<M> {
  const handles = {};
  for (const [key, def] of Object.entries(maps)) {
    let open: AnyHandle | undefined;
    Object.defineProperty(handles, key, {
      enumerable: true,
      get: () => {
        if (!open || open.closed) open = openMap(source, def);
        return open;
      },
    });
  }
  return handles as MapHandles<M>;
}

/** The described maps pinned under a bpffs dir (tools and tests beside a live nkitd). */
export function pinnedMaps<O extends ObjectDef>(dir: string, def: O): MapHandles<O["maps"]> {
  return openMaps(new PinnedMaps(dir), def.maps);
}

interface SkeletonOptions<O extends ObjectDef> extends Omit<BpfObjectOptions, "recreatable"> {
  /** The object file; default: bpf/build/<def.file> as `npm run build:bpf` built it. */
  path?: string;
  /** See BpfObjectOptions.recreatable; only maps the object has. */
  recreatable?: readonly MapName<O>[];
}

/** A loaded object with typed handles of its maps and programs; the handles close with it. */
export class Skeleton<O extends ObjectDef> {
  readonly maps: MapHandles<O["maps"]>;
  readonly programs: ProgramHandles<O["programs"]>;

  /** The handles of an object loaded elsewhere, which it takes over (close() closes it). */
  constructor(
    readonly def: O,
    readonly object: BpfObject,
  ) {
    this.maps = openMaps(object, def.maps);
    const programs = {};
    for (const name of Object.keys(def.programs)) {
      Object.defineProperty(programs, name, { enumerable: true, get: () => object.program(name) });
    }
    this.programs = programs as ProgramHandles<O["programs"]>;
  }

  /** Opens and loads the object (BpfObject.load: pinned maps reused, checked and sized as opts say). */
  static load<O extends ObjectDef>(def: O, opts: SkeletonOptions<O> = {}): Skeleton<O> {
    const { path, ...loadOpts } = opts;
    return new Skeleton(def, BpfObject.load(path ?? builtObjectPath(def.file), loadOpts));
  }

  /** Pinned maps made anew at load because their configured capacity changed. */
  get resized(): readonly { name: string; from: number; to: number }[] {
    return this.object.resized;
  }

  close(): void {
    this.object.close();
  }
}
