// The datapath object (bpf/datapath.bpf.c), loaded once per process. Its maps are pinned by name
// under the bpffs dir, so a new process picks up the same endpoint table and counters.
import { u32 } from "../bpf/codec.js";
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
import type { BpfMap, PerCpuMap } from "../bpf/map.js";
import { BpfObject, builtObjectPath } from "../bpf/object.js";
import type { BpfProgram } from "../bpf/program.js";
import type { PacketCounter } from "../bpf/shared.js";

export const PROGRAM = {
  fromContainer: "nk_from_container",
  toContainer: "nk_to_container",
  fromUplink: "nk_from_uplink",
} as const;

export const defaultObjectPath = (): string => builtObjectPath("datapath.bpf.o");

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

  /** Loads the programs; maps come from (or are pinned to) pinRoot. */
  static load(pinRoot: string, objectPath = defaultObjectPath()): DatapathPrograms {
    const obj = BpfObject.load(objectPath, { pinRoot, name: "nkit_datapath" });
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
