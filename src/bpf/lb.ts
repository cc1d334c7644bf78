// TS side of bpf/include/nkit_lb.h: the service load-balancer's map names, keys and values.
// Struct sizes and offsets are checked against the BTF of bpf/build/sock_lb.bpf.o, and the maps
// against its map definitions (test/unit/bpf-shared-btf.test.ts). Ports are in network order
// (be16), addresses 16 bytes with IPv4 in the first 4.
import { be16, bytes, type StructCodec, struct, u8, u16, u32, u64 } from "./codec.js";
import type { MapLayout } from "./map.js";
import { prefixKey } from "./shared.js";

/** The maps of bpf/sock_lb.bpf.c, pinned by name under nkitd's bpffs dir. */
export const LbMap = {
  services: "nk_lb_services",
  backends: "nk_lb_backends",
  sockRev: "nk_lb_sock_rev",
  affinity: "nk_lb_affinity",
  counters: "nk_lb_counters",
  /** Per-CPU connections sent to each backend slot (both objects). */
  backendConns: "nk_lb_backend_conns",
  /** LPM trie of nkitd's serviceCIDRs: a VIP there without a service is refused. */
  serviceCidrs: "nk_lb_service_cidrs",
  /** Per-packet path, created by the datapath object (bpf/datapath.bpf.c). */
  maglev: "nk_lb_maglev",
  ct: "nk_lb_ct",
  /** Per-packet path: the Maglev table size (struct nk_lb_config). */
  config: "nk_lb_config",
  /** Per-packet path: conntrack idle timeouts by state (struct nk_ct_config). */
  ctConfig: "nk_ct_config",
} as const;

/** The programs of bpf/sock_lb.bpf.c, by the cgroup hook each one runs at. */
export const LB_PROGRAM = {
  connect4: "nk_sock_connect4",
  connect6: "nk_sock_connect6",
  sendmsg4: "nk_sock_sendmsg4",
  sendmsg6: "nk_sock_sendmsg6",
  recvmsg4: "nk_sock_recvmsg4",
  recvmsg6: "nk_sock_recvmsg6",
  getpeername4: "nk_sock_getpeername4",
  getpeername6: "nk_sock_getpeername6",
} as const;

export const LbFlags = { AFFINITY: 0x1, EXTERNAL: 0x2 } as const;

/** enum nk_lb_reason: the index of each counter in nk_lb_counters. */
export const LB_REASONS = [
  "translated",
  "reversed",
  "no-backend",
  "backend-missing",
  "affinity-hit",
  "no-service",
] as const;
export type LbReason = (typeof LB_REASONS)[number];

/** An address with its family tag and a port: struct nk_lb_addr's fields, shared by several structs. */
export interface LbAddress {
  family: number;
  port: number;
  addr: Buffer;
}

/** struct nk_lb_key */
export interface LbKey extends LbAddress {
  proto: number;
}

/** struct nk_lb_service */
export interface LbService {
  id: number;
  count: number;
  flags: number;
  affinity_timeout: number;
}

/** struct nk_lb_backend_key */
export interface LbBackendKey {
  id: number;
  slot: number;
}

/** struct nk_lb_sock_key */
export interface LbSockKey extends LbAddress {
  cookie: bigint;
}

/** struct nk_lb_sock_value */
export interface LbSockValue extends LbAddress {
  id: number;
}

/** struct nk_lb_affinity_key */
export interface LbAffinityKey {
  client: bigint;
  id: number;
}

/** struct nk_lb_affinity */
export interface LbAffinity extends LbAddress {
  last_used_ns: bigint;
  slot: number;
}

/** struct nk_lb_ct_key */
export interface LbCtKey {
  family: number;
  proto: number;
  dir: number;
  sport: number;
  dport: number;
  saddr: Buffer;
  daddr: Buffer;
}

/** struct nk_lb_ct */
export interface LbCt extends LbAddress {
  last_seen_ns: bigint;
  flags: number;
  id: number;
}

/** NK_LB_CT_*: the direction of a conntrack entry. */
export const LbCtDir = { FORWARD: 0, REVERSE: 1 } as const;

/** The {family, pad, port, addr[16]} run every address struct of nkit_lb.h has, at `at`. */
const addressFields = (at: number) => ({
  family: { offset: at, codec: u8 },
  port: { offset: at + 2, codec: be16 },
  addr: { offset: at + 4, codec: bytes(16) },
});

export const lbKey: StructCodec<LbKey> = struct<LbKey>({
  name: "nk_lb_key",
  size: 20,
  fields: { ...addressFields(0), proto: { offset: 1, codec: u8 } },
});

export const lbService: StructCodec<LbService> = struct<LbService>({
  name: "nk_lb_service",
  size: 12,
  fields: {
    id: { offset: 0, codec: u32 },
    count: { offset: 4, codec: u16 },
    flags: { offset: 6, codec: u16 },
    affinity_timeout: { offset: 8, codec: u32 },
  },
});

export const lbBackendKey: StructCodec<LbBackendKey> = struct<LbBackendKey>({
  name: "nk_lb_backend_key",
  size: 8,
  fields: { id: { offset: 0, codec: u32 }, slot: { offset: 4, codec: u32 } },
});

export const lbAddr: StructCodec<LbAddress> = struct<LbAddress>({
  name: "nk_lb_addr",
  size: 20,
  fields: addressFields(0),
  padding: [{ name: "pad", offset: 1, size: 1 }],
});

export const lbSockKey: StructCodec<LbSockKey> = struct<LbSockKey>({
  name: "nk_lb_sock_key",
  size: 32,
  fields: { cookie: { offset: 0, codec: u64 }, ...addressFields(8) },
  padding: [
    { name: "pad", offset: 9, size: 1 },
    { name: "pad2", offset: 28, size: 4 },
  ],
});

export const lbSockValue: StructCodec<LbSockValue> = struct<LbSockValue>({
  name: "nk_lb_sock_value",
  size: 24,
  fields: { ...addressFields(0), id: { offset: 20, codec: u32 } },
  padding: [{ name: "pad", offset: 1, size: 1 }],
});

export const lbAffinityKey: StructCodec<LbAffinityKey> = struct<LbAffinityKey>({
  name: "nk_lb_affinity_key",
  size: 16,
  fields: { client: { offset: 0, codec: u64 }, id: { offset: 8, codec: u32 } },
  padding: [{ name: "pad", offset: 12, size: 4 }],
});

export const lbAffinity: StructCodec<LbAffinity> = struct<LbAffinity>({
  name: "nk_lb_affinity",
  size: 32,
  fields: { last_used_ns: { offset: 0, codec: u64 }, slot: { offset: 8, codec: u32 }, ...addressFields(12) },
  padding: [{ name: "pad", offset: 13, size: 1 }],
});

export const lbCtKey: StructCodec<LbCtKey> = struct<LbCtKey>({
  name: "nk_lb_ct_key",
  size: 40,
  fields: {
    family: { offset: 0, codec: u8 },
    proto: { offset: 1, codec: u8 },
    dir: { offset: 2, codec: u8 },
    sport: { offset: 4, codec: be16 },
    dport: { offset: 6, codec: be16 },
    saddr: { offset: 8, codec: bytes(16) },
    daddr: { offset: 24, codec: bytes(16) },
  },
  padding: [{ name: "pad", offset: 3, size: 1 }],
});

export const lbCt: StructCodec<LbCt> = struct<LbCt>({
  name: "nk_lb_ct",
  size: 32,
  fields: {
    last_seen_ns: { offset: 0, codec: u64 },
    ...addressFields(8),
    flags: { offset: 9, codec: u8 },
    id: { offset: 28, codec: u32 },
  },
});

/** struct nk_lb_config */
export interface LbConfig {
  maglev_m: number;
}

/** struct nk_ct_config: nanoseconds; 0 = the built-in default. */
export interface CtConfig {
  tcp_established_ns: bigint;
  tcp_opening_ns: bigint;
  tcp_closing_ns: bigint;
  other_ns: bigint;
}

export const lbConfig: StructCodec<LbConfig> = struct<LbConfig>({
  name: "nk_lb_config",
  size: 8,
  fields: { maglev_m: { offset: 0, codec: u32 } },
  padding: [{ name: "pad", offset: 4, size: 4 }],
});

export const ctConfig: StructCodec<CtConfig> = struct<CtConfig>({
  name: "nk_ct_config",
  size: 32,
  fields: {
    tcp_established_ns: { offset: 0, codec: u64 },
    tcp_opening_ns: { offset: 8, codec: u64 },
    tcp_closing_ns: { offset: 16, codec: u64 },
    other_ns: { offset: 24, codec: u64 },
  },
});

/** The capacities of the load-balancer's shared maps (both objects size them alike). */
export function lbMapSizes(l: {
  services: number;
  backends: number;
  conntrack: number;
  externalFrontends: number;
}): Record<string, number> {
  return {
    [LbMap.services]: l.services,
    [LbMap.backends]: l.backends,
    [LbMap.backendConns]: l.backends,
    [LbMap.ct]: l.conntrack,
    [LbMap.maglev]: l.externalFrontends,
  };
}

/** NK_CT_F_* */
export const CtFlags = { ESTABLISHED: 0x1, CLOSING: 0x2 } as const;

/** Idle timeouts of nk_lb_ct entries by state, in nanoseconds. */
export interface CtTimeouts {
  tcpEstablished: bigint;
  tcpOpening: bigint;
  tcpClosing: bigint;
  /** UDP and ICMP */
  other: bigint;
}

/** The built-in idle timeouts (NK_LB_CT_*_TIMEOUT_NS in nkit_lb.h), used while nk_ct_config holds 0. */
export const CT_TIMEOUT_NS: CtTimeouts = {
  tcpEstablished: 21_600n * 1_000_000_000n,
  tcpOpening: 60n * 1_000_000_000n,
  tcpClosing: 10n * 1_000_000_000n,
  other: 300n * 1_000_000_000n,
};

/** How long an entry may stay idle, as the datapath judges it. */
export function ctTimeoutNs(proto: number, flags: number, t: CtTimeouts = CT_TIMEOUT_NS): bigint {
  if (proto !== 6) return t.other;
  if (flags & CtFlags.CLOSING) return t.tcpClosing;
  return flags & CtFlags.ESTABLISHED ? t.tcpEstablished : t.tcpOpening;
}

/** The structs of nkit_lb.h the per-packet path (bpf/datapath.bpf.c) records. */
export const LB_PACKET_STRUCTS: readonly StructCodec<unknown>[] = [
  lbCtKey as StructCodec<unknown>,
  lbCt as StructCodec<unknown>,
  lbConfig as StructCodec<unknown>,
  ctConfig as StructCodec<unknown>,
];

/** The load-balancer maps the datapath object holds, as the TS side opens them. */
export const LB_PACKET_MAP_LAYOUTS: readonly MapLayout[] = [
  { name: LbMap.services, type: "hash", keySize: lbKey.size, valueSize: lbService.size },
  { name: LbMap.backends, type: "hash", keySize: lbBackendKey.size, valueSize: lbAddr.size },
  { name: LbMap.maglev, type: "hash_of_maps", keySize: u32.size, valueSize: u32.size },
  { name: LbMap.ct, type: "lru_hash", keySize: lbCtKey.size, valueSize: lbCt.size },
  { name: LbMap.backendConns, type: "percpu_hash", keySize: lbBackendKey.size, valueSize: u64.size },
  { name: LbMap.config, type: "array", keySize: u32.size, valueSize: lbConfig.size },
  { name: LbMap.ctConfig, type: "array", keySize: u32.size, valueSize: ctConfig.size },
];

/** Every struct codec mirrored from nkit_lb.h, for the BTF layout test. */
export const LB_STRUCTS: readonly StructCodec<unknown>[] = [
  lbKey as StructCodec<unknown>,
  lbService as StructCodec<unknown>,
  lbBackendKey as StructCodec<unknown>,
  lbAddr as StructCodec<unknown>,
  lbSockKey as StructCodec<unknown>,
  lbSockValue as StructCodec<unknown>,
  lbAffinityKey as StructCodec<unknown>,
  lbAffinity as StructCodec<unknown>,
  prefixKey as StructCodec<unknown>,
];

/** The maps as the TS side opens them, for the map test against the built object. */
export const LB_MAP_LAYOUTS: readonly MapLayout[] = [
  { name: LbMap.services, type: "hash", keySize: lbKey.size, valueSize: lbService.size },
  { name: LbMap.backends, type: "hash", keySize: lbBackendKey.size, valueSize: lbAddr.size },
  { name: LbMap.sockRev, type: "lru_hash", keySize: lbSockKey.size, valueSize: lbSockValue.size },
  { name: LbMap.affinity, type: "lru_hash", keySize: lbAffinityKey.size, valueSize: lbAffinity.size },
  { name: LbMap.counters, type: "percpu_array", keySize: u32.size, valueSize: u64.size },
  { name: LbMap.backendConns, type: "percpu_hash", keySize: lbBackendKey.size, valueSize: u64.size },
  { name: LbMap.serviceCidrs, type: "lpm_trie", keySize: prefixKey.size, valueSize: u8.size },
];
