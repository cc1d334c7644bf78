// The per-frontend Maglev tables of the per-packet load-balancer (nk_lb_maglev, a hash of maps
// owned by the datapath object): frontend id → an array of backend slots, of the size nkitd's
// limits.maglevTableSize names (recorded in nk_lb_config, which the datapath reads). A table is
// built whole in a fresh inner map and swapped in with one update, so the datapath never reads a
// half-written table; the kernel frees the old one when its last reader is done. A table depends only
// on the backends' names and the size, so frontends with the same backends (a host port published on
// every host address, tcp and udp) share one inner map: built once, not once per frontend.
import { u32 } from "../bpf/codec.js";
import { BPF } from "../bpf/constants.js";
import type { DatapathObjectMaps } from "../bpf/gen/datapath.skel.js";
import type { LbConfig } from "../bpf/lb.js";
import { BpfMap, type MapOfMaps } from "../bpf/map.js";
import { NotSupportedError } from "../errors.js";
import { MAGLEV_TABLE_SIZE, maglevTable } from "./maglev.js";

/** An external frontend as the maps hold it: its id and its backends' names in slot order. */
export interface MaglevFrontend {
  id: number;
  backends: readonly string[];
}

/** An inner map some frontends point at, and how many. */
interface SharedTable {
  map: BpfMap<number, number>;
  refs: number;
}

export class MaglevTables {
  /** Built tables by content (the backends' names), while a frontend uses them. */
  private readonly tables = new Map<string, SharedTable>();
  /** Which table each frontend this process set points at. */
  private readonly tableOf = new Map<number, string>();

  private constructor(
    private readonly outer: MapOfMaps<number>,
    private readonly config: BpfMap<number, LbConfig>,
    readonly size: number,
  ) {}

  /** Takes the maps from the datapath object's handles (or their pins: pinnedMaps); tables get `size` entries. */
  static open(
    maps: Pick<DatapathObjectMaps, "nk_lb_maglev" | "nk_lb_config">,
    size = MAGLEV_TABLE_SIZE,
  ): MaglevTables {
    const outer = maps.nk_lb_maglev;
    try {
      if (outer.info.typeName !== "hash_of_maps") {
        throw new NotSupportedError(`BPF map ${outer.name} of type ${outer.info.typeName}`, "a hash_of_maps");
      }
      return new MaglevTables(outer, maps.nk_lb_config, size);
    } catch (e) {
      outer.close();
      throw e;
    }
  }

  /**
   * Brings the tables in line with the external frontends the service maps hold (at start): a
   * missing table is built, one of a frontend that is gone removed, and all of them rebuilt when
   * the table size changed. The size the datapath divides by is switched after the rebuild.
   * Returns how many tables were built.
   */
  sync(frontends: readonly MaglevFrontend[]): number {
    const stored = this.config.lookup(0)?.maglev_m ?? 0;
    const was = stored || MAGLEV_TABLE_SIZE;
    const have = new Set(this.ids());
    let built = 0;
    for (const f of frontends) {
      if (was === this.size && have.has(f.id)) continue;
      this.set(f.id, f.backends);
      built++;
    }
    const wanted = new Set(frontends.map((f) => f.id));
    for (const id of have) if (!wanted.has(id)) this.remove(id);
    if (stored !== this.size) this.config.update(0, { maglev_m: this.size });
    return built;
  }

  /** Installs the table of frontend id over its backends (names in slot order), built or shared. */
  set(id: number, backends: readonly string[]): void {
    // One backend fills every slot with 0 whatever its name: all such frontends share one table.
    const key = backends.length === 1 ? "" : backends.join("\n");
    let shared = this.tables.get(key);
    if (!shared) {
      const map = BpfMap.createArray("nk_lb_maglev_t", u32, this.size, BPF.F_INNER_MAP);
      try {
        const table = maglevTable(backends, this.size);
        // A new array map is zeroed: a table of slot 0 only needs no writes.
        if (table.some((slot) => slot !== 0)) map.updateBatch(Array.from(table, (slot, i) => [i, slot] as const));
      } catch (e) {
        map.close();
        throw e;
      }
      shared = { map, refs: 0 };
      this.tables.set(key, shared);
    }
    try {
      this.outer.set(id, shared.map);
    } catch (e) {
      if (shared.refs === 0) this.drop(key);
      throw e;
    }
    shared.refs++;
    const before = this.tableOf.get(id);
    this.tableOf.set(id, key);
    if (before !== undefined) this.release(before);
  }

  remove(id: number): void {
    this.outer.delete(id);
    const key = this.tableOf.get(id);
    this.tableOf.delete(id);
    if (key !== undefined) this.release(key);
  }

  /** How many distinct tables this process holds (shared ones count once). */
  get built(): number {
    return this.tables.size;
  }

  private release(key: string): void {
    const shared = this.tables.get(key);
    if (shared && --shared.refs <= 0) this.drop(key);
  }

  private drop(key: string): void {
    this.tables.get(key)?.map.close();
    this.tables.delete(key);
  }

  ids(): number[] {
    return [...this.outer.keys()];
  }

  close(): void {
    for (const key of [...this.tables.keys()]) this.drop(key);
    this.tableOf.clear();
    this.outer.close();
    this.config.close();
  }
}
