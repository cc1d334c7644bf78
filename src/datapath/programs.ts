// The datapath object (bpf/datapath.bpf.c), loaded once per process. Its maps are pinned by name
// under the bpffs dir, so a new process picks up the same endpoint table and counters. Its handles
// come from the object's generated skeleton (src/bpf/gen/datapath.skel.ts).

import { existsSync, rmSync } from "node:fs";
import { BPF } from "../bpf/constants.js";
import type { CounterKey, EndpointKey, EndpointValue } from "../bpf/datapath.js";
import { type DatapathObject, type DatapathObjectMaps, datapathObject } from "../bpf/gen/datapath.skel.js";
import type { BpfMap, PerCpuMap } from "../bpf/map.js";
import { PinnedMaps } from "../bpf/map-source.js";
import { builtObjectPath } from "../bpf/object.js";
import type { BpfProgram } from "../bpf/program.js";
import type { PacketCounter } from "../bpf/shared.js";
import { Skeleton } from "../bpf/skeleton.js";

const defaultObjectPath = (): string => builtObjectPath(datapathObject.file);

/** Never a frontend id (ids stop at 0xfffffffe). */
const PROBE_ID = 0xffffffff;

/**
 * An nk_lb_maglev an older build pinned has an inner template without BPF_F_INNER_MAP and refuses
 * tables of any other size: its pin is removed so the load makes it anew. The load-balancer rebuilds
 * every table from the service maps when it opens (SocketLb), and the running programs keep the old
 * one until their links are updated.
 */
function dropOldMaglevOuter(pinRoot: string): void {
  const def = datapathObject.maps.nk_lb_maglev;
  const pins = new PinnedMaps(pinRoot);
  if (!existsSync(pins.path(def.name))) return;
  const outer = pins.mapOfMaps(def.name, def.key);
  try {
    if (outer.accepts(PROBE_ID, BPF.F_INNER_MAP, 1)) return;
  } finally {
    outer.close();
  }
  rmSync(pins.path(def.name));
}

export class DatapathPrograms {
  readonly fromContainer: BpfProgram;
  readonly toContainer: BpfProgram;
  /** The netkit primary's program: it sees the peer as the packet's device (datapath.bpf.c). */
  readonly toContainerNetkit: BpfProgram;
  readonly fromUplink: BpfProgram;
  readonly endpoints: BpfMap<EndpointKey, EndpointValue>;
  readonly devices: BpfMap<number, number>;
  readonly counters: PerCpuMap<CounterKey, PacketCounter>;

  private constructor(private readonly skel: Skeleton<DatapathObject>) {
    this.fromContainer = skel.programs.nk_from_container;
    this.toContainer = skel.programs.nk_to_container;
    this.toContainerNetkit = skel.programs.nk_to_container_netkit;
    this.fromUplink = skel.programs.nk_from_uplink;
    this.endpoints = skel.maps.nk_endpoints;
    this.devices = skel.maps.nk_devices;
    this.counters = skel.maps.nk_counters;
  }

  /** The object's typed map handles, for the owners of the ones this object only creates. */
  get maps(): DatapathObjectMaps {
    return this.skel.maps;
  }

  /** Pinned maps made anew at load because their configured capacity changed. */
  get resized(): readonly { name: string; from: number; to: number }[] {
    return this.skel.resized;
  }

  /** Loads the programs; maps come from (or are pinned to) pinRoot, sized as `sizes` says. */
  static load(
    pinRoot: string,
    objectPath = defaultObjectPath(),
    sizes?: Readonly<Record<string, number>>,
  ): DatapathPrograms {
    dropOldMaglevOuter(pinRoot);
    const skel = Skeleton.load(datapathObject, {
      path: objectPath,
      pinRoot,
      name: "nkit_datapath",
      ...(sizes ? { sizes } : {}),
    });
    try {
      return new DatapathPrograms(skel);
    } catch (e) {
      skel.close();
      throw e;
    }
  }

  /** Pins again the maps whose pins were removed under this process (BpfObject.repinMaps). */
  repinMaps(): string[] {
    return this.skel.object.repinMaps();
  }

  close(): void {
    this.skel.close();
  }
}
