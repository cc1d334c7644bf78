// The datapath object (bpf/datapath.bpf.c), loaded once per process. Its maps are pinned by name
// under the bpffs dir, so a new process picks up the same endpoint table and counters.

import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { u32 } from "../bpf/codec.js";
import { BPF } from "../bpf/constants.js";
import {
  type CounterKey,
  counterKey,
  counterValue,
  DatapathMap,
  type EndpointKey,
  type EndpointValue,
  endpointKey,
  endpointValue,
} from "../bpf/datapath.js";
import { LbMap } from "../bpf/lb.js";
import { type BpfMap, MapOfMaps, type PerCpuMap } from "../bpf/map.js";
import type { MapSource } from "../bpf/map-source.js";
import { BpfObject, builtObjectPath } from "../bpf/object.js";
import type { BpfProgram } from "../bpf/program.js";
import type { PacketCounter } from "../bpf/shared.js";

export const PROGRAM = {
  fromContainer: "nk_from_container",
  toContainer: "nk_to_container",
  fromUplink: "nk_from_uplink",
} as const;

export const defaultObjectPath = (): string => builtObjectPath("datapath.bpf.o");

/** Never a frontend id (ids stop at 0xfffffffe). */
const PROBE_ID = 0xffffffff;

/**
 * An nk_lb_maglev an older build pinned has an inner template without BPF_F_INNER_MAP and refuses
 * tables of any other size: its pin is removed so the load makes it anew. The load-balancer rebuilds
 * every table from the service maps when it opens (SocketLb), and the running programs keep the old
 * one until their links are updated.
 */
function dropOldMaglevOuter(pinRoot: string): void {
  const path = join(pinRoot, LbMap.maglev);
  if (!existsSync(path)) return;
  const outer = MapOfMaps.open(path, u32);
  try {
    if (outer.accepts(PROBE_ID, BPF.F_INNER_MAP, 1)) return;
  } finally {
    outer.close();
  }
  rmSync(path);
}

export class DatapathPrograms {
  readonly fromContainer: BpfProgram;
  readonly toContainer: BpfProgram;
  readonly fromUplink: BpfProgram;
  readonly endpoints: BpfMap<EndpointKey, EndpointValue>;
  readonly devices: BpfMap<number, number>;
  readonly counters: PerCpuMap<CounterKey, PacketCounter>;

  private constructor(private readonly obj: BpfObject) {
    this.fromContainer = obj.program(PROGRAM.fromContainer);
    this.toContainer = obj.program(PROGRAM.toContainer);
    this.fromUplink = obj.program(PROGRAM.fromUplink);
    this.endpoints = obj.map(DatapathMap.endpoints, endpointKey, endpointValue);
    this.devices = obj.map(DatapathMap.devices, u32, u32);
    this.counters = obj.perCpuMap(DatapathMap.counters, counterKey, counterValue);
  }

  /** The object's maps by name, for the owners of the ones this object only creates. */
  get maps(): MapSource {
    return this.obj;
  }

  /** Pinned maps made anew at load because their configured capacity changed. */
  get resized(): readonly { name: string; from: number; to: number }[] {
    return this.obj.resized;
  }

  /** Loads the programs; maps come from (or are pinned to) pinRoot, sized as `sizes` says. */
  static load(
    pinRoot: string,
    objectPath = defaultObjectPath(),
    sizes?: Readonly<Record<string, number>>,
  ): DatapathPrograms {
    dropOldMaglevOuter(pinRoot);
    const obj = BpfObject.load(objectPath, {
      pinRoot,
      name: "nkit_datapath",
      ...(sizes ? { sizes } : {}),
    });
    try {
      return new DatapathPrograms(obj);
    } catch (e) {
      obj.close();
      throw e;
    }
  }

  close(): void {
    this.obj.close();
  }
}
