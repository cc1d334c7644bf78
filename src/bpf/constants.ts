// uapi values (linux/bpf.h) the TS side needs. The addon reports the values it was compiled with
// (bpfConstants()); a unit test keeps the two in step.
export const BPF = {
  TCX_INGRESS: 46,
  TCX_EGRESS: 47,
  NETKIT_PRIMARY: 54,
  NETKIT_PEER: 55,
  CGROUP_INET4_CONNECT: 10,
  CGROUP_INET6_CONNECT: 11,
  CGROUP_UDP4_SENDMSG: 14,
  CGROUP_UDP6_SENDMSG: 15,
  CGROUP_UDP4_RECVMSG: 19,
  CGROUP_UDP6_RECVMSG: 20,
  CGROUP_INET4_GETPEERNAME: 29,
  CGROUP_INET6_GETPEERNAME: 30,
  LINK_TYPE_CGROUP: 3,
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
  F_INNER_MAP: 4096,
  MAP_TYPE_ARRAY: 2,
  MAP_TYPE_HASH_OF_MAPS: 13,
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

/** The cgroup socket-address hooks the socket load-balancer attaches to. */
export type CgroupHook =
  | "connect4"
  | "connect6"
  | "sendmsg4"
  | "sendmsg6"
  | "recvmsg4"
  | "recvmsg6"
  | "getpeername4"
  | "getpeername6";

export const CGROUP_ATTACH_TYPE: Readonly<Record<CgroupHook, number>> = {
  connect4: BPF.CGROUP_INET4_CONNECT,
  connect6: BPF.CGROUP_INET6_CONNECT,
  sendmsg4: BPF.CGROUP_UDP4_SENDMSG,
  sendmsg6: BPF.CGROUP_UDP6_SENDMSG,
  recvmsg4: BPF.CGROUP_UDP4_RECVMSG,
  recvmsg6: BPF.CGROUP_UDP6_RECVMSG,
  getpeername4: BPF.CGROUP_INET4_GETPEERNAME,
  getpeername6: BPF.CGROUP_INET6_GETPEERNAME,
};

/** The hook a program's ELF section names in libbpf's "cgroup/<hook>" form, if it is one of these. */
export function cgroupHookOf(section: string): CgroupHook | undefined {
  const hook = section.startsWith("cgroup/") ? section.slice("cgroup/".length) : "";
  return Object.hasOwn(CGROUP_ATTACH_TYPE, hook) ? (hook as CgroupHook) : undefined;
}

/** Linux /sys/fs/bpf filesystem magic (statfs f_type). */
export const BPF_FS_MAGIC = 0xcafe4a11;
