// Where a map's owner gets its handles: from the loaded object that created the map (nkitd hands the
// datapath object's maps to masquerade, the conntrack and the per-packet load-balancer, so the
// order "datapath first" is explicit in who holds what), or by the map's pin under a bpffs dir
// (tools and tests working beside a live nkitd).
import { join } from "node:path";
import type { Codec } from "./codec.js";
import { BpfMap, MapOfMaps } from "./map.js";

export interface MapSource {
  map<K, V>(name: string, key: Codec<K>, value: Codec<V>): BpfMap<K, V>;
  mapOfMaps<K>(name: string, key: Codec<K>): MapOfMaps<K>;
}

/** The maps pinned by name under a bpffs dir. */
export class PinnedMaps implements MapSource {
  constructor(readonly dir: string) {}

  map<K, V>(name: string, key: Codec<K>, value: Codec<V>): BpfMap<K, V> {
    return BpfMap.fromPin(join(this.dir, name), key, value);
  }

  mapOfMaps<K>(name: string, key: Codec<K>): MapOfMaps<K> {
    return MapOfMaps.open(join(this.dir, name), key);
  }
}
