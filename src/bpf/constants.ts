// uapi values (linux/bpf.h) the TS side needs. The addon reports the values it was compiled with
// (bpfConstants()); a unit test keeps the two in step.
export const BPF = {
  TCX_INGRESS: 46,
  TCX_EGRESS: 47,
  NETKIT_PRIMARY: 54,
  NETKIT_PEER: 55,
  LINK_TYPE_TCX: 11,
  LINK_TYPE_NETKIT: 13,
  PROG_TYPE_SCHED_CLS: 3,
  F_REPLACE: 4,
  F_BEFORE: 8,
  F_AFTER: 16,
  F_ID: 32,
  F_LINK: 8192,
  ANY: 0,
  NOEXIST: 1,
  EXIST: 2,
  F_LOCK: 4,
  FUNC_FIB_LOOKUP: 69,
  FUNC_REDIRECT_NEIGH: 152,
  FUNC_REDIRECT_PEER: 155,
} as const;

/** Where a tcx or netkit link runs. netkit attach points are reached through the primary's ifindex. */
export type AttachPoint = "tcx-ingress" | "tcx-egress" | "netkit-primary" | "netkit-peer";

export const ATTACH_TYPE: Readonly<Record<AttachPoint, number>> = {
  "tcx-ingress": BPF.TCX_INGRESS,
  "tcx-egress": BPF.TCX_EGRESS,
  "netkit-primary": BPF.NETKIT_PRIMARY,
  "netkit-peer": BPF.NETKIT_PEER,
};

export function attachPointOf(attachType: number): AttachPoint | undefined {
  for (const [k, v] of Object.entries(ATTACH_TYPE)) if (v === attachType) return k as AttachPoint;
  return undefined;
}

/** Linux /sys/fs/bpf filesystem magic (statfs f_type). */
export const BPF_FS_MAGIC = 0xcafe4a11;
