// Where a map's handle comes from: the loaded object that created the map (nkitd hands the datapath
// object's maps to masquerade, the conntrack and the per-packet load-balancer, so the order
// "datapath first" is explicit in who holds what), or the map's pin under a bpffs dir (tools and
// tests working beside a live nkitd). A skeleton (./skeleton.ts) opens an object's maps from either.
import { join } from "node:path";
import type { Codec } from "./codec.js";
import { BpfMap, MapOfMaps, PerCpuMap } from "./map.js";
import { RingBufferMap } from "./ringbuf.js";

export interface MapSource {
  map<K, V>(name: string, key: Codec<K>, value: Codec<V>): BpfMap<K, V>;
  perCpuMap<K, V>(name: string, key: Codec<K>, value: Codec<V>): PerCpuMap<K, V>;
  mapOfMaps<K>(name: string, key: Codec<K>): MapOfMaps<K>;
  ringBuffer(name: string): RingBufferMap;
}

/** The maps pinned by name under a bpffs dir. */
export class PinnedMaps implements MapSource {
  constructor(readonly dir: string) {}

  /** Where the map of that name is (or would be) pinned. */
  path(name: string): string {
    return join(this.dir, name);
  }

  map<K, V>(name: string, key: Codec<K>, value: Codec<V>): BpfMap<K, V> {
    return BpfMap.fromPin(this.path(name), key, value);
  }

  perCpuMap<K, V>(name: string, key: Codec<K>, value: Codec<V>): PerCpuMap<K, V> {
    return PerCpuMap.fromPin(this.path(name), key, value);
  }

  mapOfMaps<K>(name: string, key: Codec<K>): MapOfMaps<K> {
    return MapOfMaps.open(this.path(name), key);
  }

  ringBuffer(name: string): RingBufferMap {
    return RingBufferMap.fromPin(this.path(name));
  }
}
