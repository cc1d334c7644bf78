// TS side of bpf/include/nkit_lb.h: the service load-balancer's map names, keys and values. The
// struct codecs are generated from the objects' BTF (src/bpf/gen, `npm run build:abi`); the maps
// are checked against the objects' map definitions (test/unit/bpf-shared-btf.test.ts). Ports are in
// network order (be16), addresses 16 bytes with IPv4 in the first 4.
import { u8, u32, u64 } from "./codec.js";
import * as abi from "./gen/nkit_lb.js";
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

// The structs, as generated from the objects' BTF (src/bpf/gen/nkit_lb.ts), under the names the
// load-balancer code uses.
/** The {family, port, addr} every address struct of nkit_lb.h carries (struct nk_lb_addr). */
export type LbAddress = abi.NkLbAddr;
export type LbKey = abi.NkLbKey;
export type LbService = abi.NkLbService;
export type LbBackendKey = abi.NkLbBackendKey;
export type LbSockKey = abi.NkLbSockKey;
export type LbSockValue = abi.NkLbSockValue;
export type LbAffinityKey = abi.NkLbAffinityKey;
export type LbAffinity = abi.NkLbAffinity;
export type LbCtKey = abi.NkLbCtKey;
export type LbCt = abi.NkLbCt;
export type LbConfig = abi.NkLbConfig;
/** struct nk_ct_config: nanoseconds; 0 = the built-in default. */
export type CtConfig = abi.NkCtConfig;

export const lbKey = abi.nkLbKey;
export const lbService = abi.nkLbService;
export const lbBackendKey = abi.nkLbBackendKey;
export const lbAddr = abi.nkLbAddr;
export const lbSockKey = abi.nkLbSockKey;
export const lbSockValue = abi.nkLbSockValue;
export const lbAffinityKey = abi.nkLbAffinityKey;
export const lbAffinity = abi.nkLbAffinity;
export const lbCtKey = abi.nkLbCtKey;
export const lbCt = abi.nkLbCt;
export const lbConfig = abi.nkLbConfig;
export const ctConfig = abi.nkCtConfig;

/** NK_LB_CT_*: the direction of a conntrack entry. */
export const LbCtDir = { FORWARD: 0, REVERSE: 1 } as const;

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
