// Read-only views of pinned maps for inspection (`nkit bpf map list|dump`): each map owner
// (src/datapath today, the service and NAT owners next) describes its maps as MapViews with
// decoders to JSON; this module lists and dumps any set of them from their pins, so the API layer
// never opens a map or decodes a struct itself.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { NotFoundError } from "../errors.js";
import { BpfMap, type MapInfo, PerCpuMap, pinnedMapInfo } from "./map.js";
import type { MapDef, PerCpuMapDef, PlainMapDef } from "./skeleton.js";

export type Json = string | number | boolean | null | Json[] | { [k: string]: Json };
export type JsonObject = { [k: string]: Json };

/** One map as `nkit bpf map list` shows it. */
export interface PinnedMap {
  name: string;
  type: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  /** Entries now (0 for maps without entries, such as ring buffers). */
  entries: number;
  dumpable: boolean;
  pinPath: string;
}

interface MapDump {
  map: PinnedMap;
  /** Decoded [key, value] pairs, sorted by key. */
  entries: [Json, Json][];
}

export interface MapView {
  /** Map name, which is also its pin name under the bpffs dir. */
  readonly name: string;
  /** Reads and decodes every entry; absent for maps that have no entries to dump. */
  readonly read?: (pin: string) => [Json, Json][];
  /** Why the map cannot be dumped and what to use instead (maps without `read`). */
  readonly notDumpable?: string;
}

/** Any map whose entries can be read in batches (BpfMap, PerCpuMap). */
interface BatchReadable<K, V> {
  lookupBatch(): [K, V][];
  close(): void;
}

function readAll<K, V>(map: BatchReadable<K, V>, decode: (k: K, v: V) => [Json, Json]): [Json, Json][] {
  try {
    return map.lookupBatch().map(([k, v]) => decode(k, v));
  } finally {
    map.close();
  }
}

/** A map with one value per key (as its object's skeleton describes it), decoded entry by entry. */
export function hashView<K, V>(def: PlainMapDef<K, V>, decode: (k: K, v: V) => [Json, Json]): MapView {
  return { name: def.name, read: (pin) => readAll(BpfMap.fromPin(pin, def.key, def.value), decode) };
}

/** A per-CPU map; decode gets the values of every possible CPU. */
export function perCpuView<K, V>(
  def: PerCpuMapDef<K, V>,
  decode: (k: K, perCpu: V[]) => [Json, Json],
): MapView {
  return { name: def.name, read: (pin) => readAll(PerCpuMap.fromPin(pin, def.key, def.value), decode) };
}

/** A map listed but never dumped (a ring buffer); `hint` says what to use instead. */
export function undumpableView(def: MapDef, hint: string): MapView {
  return { name: def.name, notDumpable: hint };
}

function toPinnedMap(view: MapView, pin: string, info: MapInfo, entries: number): PinnedMap {
  return {
    name: view.name,
    type: info.typeName,
    keySize: info.keySize,
    valueSize: info.valueSize,
    maxEntries: info.maxEntries,
    entries,
    dumpable: view.read !== undefined,
    pinPath: pin,
  };
}

/** The maps of a set of views pinned under one bpffs dir. */
export class MapCatalog {
  constructor(
    readonly bpffsDir: string,
    private readonly views: readonly MapView[],
  ) {}

  /** The catalog with more views (another owner's maps). */
  with(views: readonly MapView[]): MapCatalog {
    return new MapCatalog(this.bpffsDir, [...this.views, ...views]);
  }

  get names(): string[] {
    return this.views.map((v) => v.name);
  }

  private pinOf(view: MapView): string {
    return join(this.bpffsDir, view.name);
  }

  /** Every pinned map of the catalog, with its current entry count; unpinned maps are skipped. */
  list(): PinnedMap[] {
    const out: PinnedMap[] = [];
    for (const view of this.views) {
      const pin = this.pinOf(view);
      if (!existsSync(pin)) continue;
      out.push(toPinnedMap(view, pin, pinnedMapInfo(pin), view.read?.(pin).length ?? 0));
    }
    return out;
  }

  /** Decoded entries of one map. */
  dump(name: string): MapDump {
    const view = this.views.find((v) => v.name === name);
    if (!view) {
      throw new NotFoundError(`no datapath map named "${name}"; known maps: ${this.names.join(", ")}`);
    }
    const pin = this.pinOf(view);
    if (!existsSync(pin)) throw new NotFoundError(`map ${view.name} is not pinned at ${pin}`);
    if (!view.read) throw new NotFoundError(`map ${view.name} ${view.notDumpable ?? "cannot be dumped"}`);
    const entries = view.read(pin).sort((a, b) => (JSON.stringify(a[0]) < JSON.stringify(b[0]) ? -1 : 1));
    return { map: toPinnedMap(view, pin, pinnedMapInfo(pin), entries.length), entries };
  }
}
