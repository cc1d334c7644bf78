// Typed slice of the addon for BPF (native/src/bpf_*.c). Every fd the addon returns is an opaque
// handle that closes its fd when garbage-collected; callers close it explicitly with fdClose().
import { loadAddon } from "./load.js";

declare const fdBrand: unique symbol;
declare const objBrand: unique symbol;

/** An owned BPF fd (map, program or link). */
export interface FdHandle {
  readonly [fdBrand]: "nkit-bpf-fd";
}

/** A libbpf bpf_object (opened, maybe loaded). */
export interface ObjHandle {
  readonly [objBrand]: "nkit-bpf-object";
}

export type FdKind = "map" | "prog" | "link" | "other";

export interface NativeProgramSpec {
  name: string;
  section: string;
  type: number;
  typeName: string;
  attachType: number;
  attachTypeName: string;
  autoload: boolean;
}

/** What both a map's spec (libbpf's, before load) and its info (the kernel's, from its fd) say. */
interface NativeMapShape {
  name: string;
  type: number;
  typeName: string;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
}

export interface NativeMapSpec extends NativeMapShape {
  pinPath: string | null;
  pinned: boolean;
  /** libbpf's own maps for global variables (.rodata, .bss, .data, .kconfig). */
  internal: boolean;
  /** The key's and value's BTF types; null when the map records none (ring buffers, a map of maps' values). */
  keyType: NativeBtfType | null;
  valueType: NativeBtfType | null;
}

export interface NativeMapInfo extends NativeMapShape {
  id: number;
  percpu: boolean;
  /** Bytes per element in syscalls: valueSize, or roundup(valueSize, 8) * possible CPUs. */
  valueLen: number;
}

export interface NativeBatch {
  count: number;
  keys: Buffer;
  values: Buffer;
  token: Buffer;
  done: boolean;
}

interface NativeProgInfo {
  id: number;
  name: string;
  type: number;
  typeName: string;
  tag: string;
}

interface NativeLinkInfo {
  id: number;
  type: number;
  typeName: string;
  progId: number;
  ifindex?: number;
  cgroupId?: bigint;
  attachType?: number;
  attachTypeName?: string;
}

export interface NativeQuery {
  revision: bigint;
  programs: { progId: number; linkId: number }[];
}

/** A type as BTF records it, with typedefs and modifiers resolved. */
export interface NativeBtfType {
  /** Bytes (-1 when BTF cannot size it). */
  size: number;
  /** int, array, struct (or union), enum, other. */
  kind: string;
  /** The first typedef on the way (__be16, __u32, ...), else the resolved type's own name. */
  typeName: string;
  /** Arrays: element count and the element's kind and type name. */
  count?: number;
  elemKind?: string;
  elemTypeName?: string;
}

interface NativeBtfMember extends NativeBtfType {
  name: string;
  offset: number;
  bitOffset: number;
  bitSize: number;
}

export interface NativeBtfStruct {
  name: string;
  size: number;
  members: NativeBtfMember[];
}

export interface NativeLinkCreateOptions {
  flags?: number;
  /** A program or link handle to order against (set BPF_F_LINK for a link). */
  relative?: FdHandle;
  /** A program or link id to order against; the addon adds BPF_F_ID. */
  relativeId?: number;
  expectedRevision?: bigint;
}

interface BpfAddon {
  fdClose(h: FdHandle): void;
  fdInfo(h: FdHandle): { fd: number; kind: FdKind };

  /** Throws with `.log` holding libbpf's output on failure. */
  objOpen(path: string, opts: { pinRoot?: string; name?: string }): ObjHandle;
  /** Throws with `.log` holding libbpf's output and the verifier log on failure. */
  objLoad(obj: ObjHandle): void;
  /** Sets a map's max_entries before objLoad. */
  objSetMapSize(obj: ObjHandle, name: string, maxEntries: number): void;
  objClose(obj: ObjHandle): void;
  objPrograms(obj: ObjHandle): NativeProgramSpec[];
  objMaps(obj: ObjHandle): NativeMapSpec[];
  /** A dup of the loaded program's fd: independent of the object's lifetime. */
  objProgram(obj: ObjHandle, name: string): FdHandle;
  objMap(obj: ObjHandle, name: string): FdHandle;
  btfStruct(path: string, name: string): NativeBtfStruct | null;
  numPossibleCpus(): number;
  bpfConstants(): Record<string, number>;

  mapInfo(map: FdHandle): NativeMapInfo;
  mapLookup(map: FdHandle, key: Uint8Array, flags?: number): Buffer | null;
  mapUpdate(map: FdHandle, key: Uint8Array, value: Uint8Array, flags: number): void;
  mapDelete(map: FdHandle, key: Uint8Array): boolean;
  mapNextKey(map: FdHandle, key: Uint8Array | null): Buffer | null;
  mapLookupBatch(map: FdHandle, token: Buffer | null, count: number, del: boolean): NativeBatch;
  mapUpdateBatch(map: FdHandle, keys: Uint8Array, values: Uint8Array, elemFlags: number): number;
  mapDeleteBatch(map: FdHandle, keys: Uint8Array): number;
  mapCreate(
    type: number,
    keySize: number,
    valueSize: number,
    maxEntries: number,
    name: string,
    flags?: number,
  ): FdHandle;
  /** Sets a map-in-map element to the map `inner` (the kernel keeps its own reference). */
  mapUpdateInner(outer: FdHandle, key: Uint8Array, inner: FdHandle, flags: number): void;

  objPin(h: FdHandle, path: string): void;
  objGet(path: string): FdHandle;
  progInfo(prog: FdHandle): NativeProgInfo;
  linkCreate(
    prog: FdHandle,
    targetIfindex: number,
    attachType: number,
    opts: NativeLinkCreateOptions,
  ): FdHandle;
  /** linkCreate on the libuv pool: tcx/netkit attaches wait for an RCU grace period. */
  linkCreateAsync(
    prog: FdHandle,
    targetIfindex: number,
    attachType: number,
    opts: NativeLinkCreateOptions,
  ): Promise<FdHandle>;
  linkUpdate(link: FdHandle, prog: FdHandle, oldProg: FdHandle | null): void;
  linkDetach(link: FdHandle): void;
  linkInfo(link: FdHandle): NativeLinkInfo;
  progQuery(ifindex: number, attachType: number): NativeQuery;
  cgroupLinkCreate(prog: FdHandle, cgroupPath: string, attachType: number): FdHandle;
  cgroupProgQuery(cgroupPath: string, attachType: number): NativeQuery;

  /** errno of BPF_LINK_CREATE on ifindex 0xffffffff (ENODEV = attach type implemented). */
  probeLinkCreate(attachType: number): number;
  probeHelper(progType: number, helperId: number): boolean;
}

export function bpfAddon(): BpfAddon {
  return loadAddon() as BpfAddon;
}
