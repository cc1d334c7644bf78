// Public surface of the BPF layer.
export {
  be16,
  bytes,
  type Codec,
  codec,
  type FieldSpec,
  ipv4,
  ipv6,
  type PaddingSpec,
  type StructCodec,
  type StructDef,
  type StructFields,
  struct,
  u8,
  u16,
  u32,
  u64,
} from "./codec.js";
export { ATTACH_TYPE, type AttachPoint, BPF } from "./constants.js";
export {
  type Anchor,
  type AnchorTarget,
  type AttachedPrograms,
  BpfLink,
  type LinkInfo,
  type NetkitAttachOptions,
  queryAttached,
  type TcxAttachOptions,
} from "./link.js";
export {
  type BatchOptions,
  BpfMap,
  type MapInfo,
  MapOfMaps,
  PerCpuMap,
  pinnedMapInfo,
  type UpdateMode,
} from "./map.js";
export { type MapSource, PinnedMaps } from "./map-source.js";
export {
  hashView,
  type Json,
  type JsonObject,
  MapCatalog,
  type MapDump,
  type MapView,
  type PinnedMap,
  perCpuView,
  undumpableView,
} from "./map-views.js";
export {
  BpfObject,
  type BpfObjectOptions,
  btfStructLayout,
  type MapSpec,
  type ProgramSpec,
} from "./object.js";
export { DEFAULT_BPFFS_ROOT, ensureBpffsDir, isOnBpffs, PinDir, removePin } from "./pins.js";
export {
  type HelperName,
  type ProbeResult,
  probeAll,
  probeBtf,
  probeHelper,
  probeNetkit,
  probeTcx,
  requireBtf,
  requireHelper,
  requireNetkit,
  requireTcx,
  resetProbeCache,
} from "./probe.js";
export { BpfProgram, type ProgramInfo } from "./program.js";
export { RingBuffer, RingBufferMap, type RingRecords } from "./ringbuf.js";
export { Family, type PacketCounter, sumCounters } from "./shared.js";
export {
  type MapDef,
  type MapHandle,
  type MapHandles,
  type MapName,
  type ObjectDef,
  openMaps,
  type ProgramDef,
  pinnedMaps,
  Skeleton,
  type SkeletonOptions,
} from "./skeleton.js";
