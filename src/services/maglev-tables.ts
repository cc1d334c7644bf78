// The per-frontend Maglev tables of the per-packet load-balancer (nk_lb_maglev, a hash of maps
// owned by the datapath object): frontend id → an array of NK_LB_MAGLEV_M backend slots. A table
// is built whole in a fresh inner map and swapped in with one update, so the datapath never reads a
// half-written table; the kernel frees the old one when its last reader is done.
import { join } from "node:path";
import { u32 } from "../bpf/codec.js";
import { LbMap } from "../bpf/lb.js";
import { BpfMap, MapOfMaps, pinnedMapInfo } from "../bpf/map.js";
import { NotSupportedError } from "../errors.js";
import { MAGLEV_TABLE_SIZE, maglevTable } from "./maglev.js";

export class MaglevTables {
  private constructor(
    private readonly outer: MapOfMaps<number>,
    readonly size: number,
  ) {}

  /** Opens the pinned outer map the datapath created under bpffsDir. */
  static open(bpffsDir: string): MaglevTables {
    const path = join(bpffsDir, LbMap.maglev);
    const info = pinnedMapInfo(path);
    if (info.typeName !== "hash_of_maps") {
      throw new NotSupportedError(`BPF map ${path} of type ${info.typeName}`, "a hash_of_maps");
    }
    return new MaglevTables(MapOfMaps.open(path, u32), MAGLEV_TABLE_SIZE);
  }

  /** Builds and installs the table of frontend id over its backends (names in slot order). */
  set(id: number, backends: readonly string[]): void {
    const table = maglevTable(backends, this.size);
    const inner = BpfMap.createArray("nk_lb_maglev_t", u32, this.size);
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
  }
}
