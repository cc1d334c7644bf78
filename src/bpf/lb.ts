// TS side of bpf/include/nkit_lb.h: the service load-balancer's keys, values, flags and counters.
// The struct codecs are generated from the objects' BTF (src/bpf/gen, `npm run build:abi`), as is
// which map of which object holds which (src/bpf/gen/sock_lb.skel.ts, datapath.skel.ts). Ports are
// in network order (be16), addresses 16 bytes with IPv4 in the first 4.
import type { DatapathObject } from "./gen/datapath.skel.js";
import * as abi from "./gen/nkit_lb.js";
import type { SockLbObject } from "./gen/sock_lb.skel.js";
import type { MapName } from "./skeleton.js";

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
export type LbCtKey = abi.NkLbCtKey;
export type LbCt = abi.NkLbCt;
export type LbConfig = abi.NkLbConfig;
/** struct nk_ct_config: nanoseconds; 0 = the built-in default. */
export type CtConfig = abi.NkCtConfig;

export const lbKey = abi.nkLbKey;
export const lbAddr = abi.nkLbAddr;

/** The capacities of the load-balancer's shared maps (both objects size them alike). */
export function lbMapSizes(l: {
  services: number;
  backends: number;
  conntrack: number;
  externalFrontends: number;
}): Record<string, number> {
  // A name neither object has fails the build here rather than being ignored at load.
  return {
    nk_lb_services: l.services,
    nk_lb_backends: l.backends,
    nk_lb_backend_conns: l.backends,
    nk_lb_ct: l.conntrack,
    nk_lb_maglev: l.externalFrontends,
  } satisfies Partial<Record<MapName<DatapathObject> | MapName<SockLbObject>, number>>;
}

/** NK_CT_F_* */
const CtFlags = { ESTABLISHED: 0x1, CLOSING: 0x2 } as const;

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
