// Mirror of enum nk_reason in bpf/include/nkit_datapath.h (checked by test/unit/datapath-reasons.test.ts).
export const Reason = {
  REDIRECT_PEER: 1,
  REDIRECT_NEIGH: 2,
  TO_STACK: 3,
  TO_CONTAINER: 4,
  FROM_UPLINK: 5,
  NON_IP: 6,
  REDIRECT_LOCAL: 7,
  LB_DNAT: 8,
  LB_RNAT: 9,
  SNAT: 10,
  SNAT_REVERSE: 11,
  LB_REMOTE: 12,
  DROP_SPOOFED_SOURCE: 64,
  DROP_UNKNOWN_SOURCE: 65,
  DROP_MALFORMED: 66,
  DROP_UNSUPPORTED_L3: 67,
  DROP_NO_ROUTE: 68,
  DROP_LB_NO_BACKEND: 69,
  DROP_NAT_NO_PORT: 70,
  DROP_LB_NO_SERVICE: 71,
} as const;

type ReasonName = keyof typeof Reason;

const byCode = new Map<number, ReasonName>(Object.entries(Reason).map(([k, v]) => [v, k as ReasonName]));

const FIRST_DROP_REASON = 64;

export function reasonName(code: number): string {
  return byCode.get(code) ?? `UNKNOWN_${code}`;
}

export function isDrop(code: number): boolean {
  return code >= FIRST_DROP_REASON;
}

export const ALL_REASON_CODES: readonly number[] = Object.values(Reason);
