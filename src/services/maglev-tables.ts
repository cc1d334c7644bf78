// The per-frontend Maglev tables of the per-packet load-balancer (nk_lb_maglev, a hash of maps
// owned by the datapath object): frontend id → an array of backend slots, of the size nkitd's
// limits.maglevTableSize names (recorded in nk_lb_config, which the datapath reads). A table is
// built whole in a fresh inner map and swapped in with one update, so the datapath never reads a
// half-written table; the kernel frees the old one when its last reader is done.
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

export class MaglevTables {
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

  /** Builds and installs the table of frontend id over its backends (names in slot order). */
  set(id: number, backends: readonly string[]): void {
    const table = maglevTable(backends, this.size);
    const inner = BpfMap.createArray("nk_lb_maglev_t", u32, this.size, BPF.F_INNER_MAP);
    try {
      inner.updateBatch(Array.from(table, (slot, i) => [i, slot] as const));
      this.outer.set(id, inner);
    } finally {
      inner.close();
    }
  }

  remove(id: number): void {
    this.outer.delete(id);
  }

  ids(): number[] {
    return [...this.outer.keys()];
  }

  close(): void {
    this.outer.close();
    this.config.close();
  }
}
