// The datapath object (bpf/datapath.bpf.c), loaded once per process. Its maps are pinned by name
// under the bpffs dir, so a new process picks up the same endpoint table and counters.
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
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
import { BpfObject } from "../bpf/object.js";
import type { BpfProgram } from "../bpf/program.js";
import type { PacketCounter } from "../bpf/shared.js";
import { NotFoundError } from "../errors.js";

export const PROGRAM = {
  fromContainer: "nk_from_container",
  toContainer: "nk_to_container",
  fromUplink: "nk_from_uplink",
} as const;

export function defaultObjectPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    const candidate = join(dir, "bpf", "build", "datapath.bpf.o");
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new NotFoundError("bpf/build/datapath.bpf.o is missing: run `npm run build:bpf`");
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
