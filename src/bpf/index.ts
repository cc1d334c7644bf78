// The BPF layer in one import, for the tests (src/ imports the modules of src/bpf/ themselves).
export { ipv4, ipv6, u32, u64 } from "./codec.js";
export { BpfLink, queryAttached } from "./link.js";
export { BpfMap, PerCpuMap } from "./map.js";
export { BpfObject } from "./object.js";
export { PinDir } from "./pins.js";
export { probeAll, probeBtf, probeHelper, probeNetkit, probeTcx, requireNetkit } from "./probe.js";
export { BpfProgram } from "./program.js";
export { sumCounters } from "./shared.js";
export { openMaps, pinnedMaps } from "./skeleton.js";
