// Legacy tc for BPF: a clsact qdisc and cls_bpf filters in direct-action mode. nkit attaches its
// endpoint programs to veth devices this way because it is cheap: a tcx link insert or delete copies
// the device's bpf_mprog entry and waits for an RCU grace period while holding RTNL (~12 ms each
// here), a cls_bpf filter insert does not. A filter outlives the process on its own (no pin) and a
// replace (NLM_F_REPLACE on the same priority and handle) swaps its program atomically.
import { NotFoundError } from "../errors.js";
import { AttrWriter, attrString, attrU32, decodeAttrs, type NlMessage, splitPayload } from "./codec.js";
import { NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE } from "./constants.js";
import { deleted, isAbsent } from "./failures.js";
import type { NlRequest, RtnlSocket } from "./socket.js";

// rtnetlink.h / pkt_sched.h / pkt_cls.h
const RTM_NEWQDISC = 36;
const RTM_NEWTFILTER = 44;
const RTM_DELTFILTER = 45;
const RTM_GETTFILTER = 46;
const TCA_KIND = 1;
const TCA_OPTIONS = 2;
const TCA_BPF_FD = 6;
const TCA_BPF_NAME = 7;
const TCA_BPF_FLAGS = 8;
const TCA_BPF_ID = 11;
const TCA_BPF_FLAG_ACT_DIRECT = 1;
const TC_H_CLSACT = 0xffff_fff1;
const TC_H_MIN_INGRESS = 0xfff2;
const TC_H_MIN_EGRESS = 0xfff3;
const ETH_P_ALL = 0x0003;
const TCMSG_LEN = 20;

export type TcDirection = "ingress" | "egress";

/** One cls_bpf filter as the kernel reports it. */
export interface TcBpfFilter {
  direction: TcDirection;
  priority: number;
  handle: number;
  /** The program's id (0 when the kernel did not say). */
  programId: number;
  name: string;
  directAction: boolean;
}

const parentOf = (d: TcDirection): number =>
  ((TC_H_CLSACT & 0xffff_0000) | (d === "ingress" ? TC_H_MIN_INGRESS : TC_H_MIN_EGRESS)) >>> 0;

function tcmsg(ifindex: number, handle: number, parent: number, info: number): Buffer {
  const b = Buffer.alloc(TCMSG_LEN);
  b.writeUInt8(0, 0); // AF_UNSPEC
  b.writeInt32LE(ifindex, 4);
  b.writeUInt32LE(handle >>> 0, 8);
  b.writeUInt32LE(parent >>> 0, 12);
  b.writeUInt32LE(info >>> 0, 16);
  return b;
}

/** tcm_info of a filter: priority in the upper half, protocol (network order) in the lower. */
const filterInfo = (priority: number): number =>
  ((priority << 16) | ((ETH_P_ALL >> 8) | ((ETH_P_ALL & 0xff) << 8))) >>> 0;

/** Adds the clsact qdisc to the device unless it has it already. */
export async function ensureClsact(sock: RtnlSocket, ifindex: number): Promise<void> {
  await sock.send(clsactRequest(ifindex));
}

/** The request ensureClsact sends (batches): EEXIST counts as done. */
export function clsactRequest(ifindex: number): NlRequest {
  const body = new AttrWriter().raw(tcmsg(ifindex, 0xffff_0000, TC_H_CLSACT, 0)).string(TCA_KIND, "clsact");
  return {
    type: RTM_NEWQDISC,
    flags: NLM_F_CREATE | NLM_F_EXCL,
    body: body.toParts(),
    operation: `add clsact qdisc on ifindex ${ifindex}`,
    fail: (e) => (isAbsent(e, "EEXIST") ? undefined : e),
  };
}

export interface TcBpfAttach {
  ifindex: number;
  direction: TcDirection;
  progFd: number;
  name: string;
  priority: number;
  handle: number;
  replace?: boolean;
}

/**
 * Attaches (or, with replace, swaps into place) program `progFd` as the cls_bpf filter of the given
 * priority and handle, in direct-action mode. The device needs its clsact qdisc (ensureClsact).
 */
export async function attachTcBpf(sock: RtnlSocket, o: TcBpfAttach): Promise<void> {
  await sock.send(attachTcBpfRequest(o));
}

/** The request attachTcBpf sends (batches). */
export function attachTcBpfRequest(o: TcBpfAttach): NlRequest {
  const w = new AttrWriter().raw(tcmsg(o.ifindex, o.handle, parentOf(o.direction), filterInfo(o.priority)));
  w.string(TCA_KIND, "bpf");
  w.nest(TCA_OPTIONS, (opt) => {
    opt.u32(TCA_BPF_FD, o.progFd);
    opt.string(TCA_BPF_NAME, o.name);
    opt.u32(TCA_BPF_FLAGS, TCA_BPF_FLAG_ACT_DIRECT);
  });
  // Own flags, not createRequest's: a duplicate filter stays the kernel's EEXIST NetlinkError.
  return {
    type: RTM_NEWTFILTER,
    flags: NLM_F_CREATE | (o.replace ? NLM_F_REPLACE : NLM_F_EXCL),
    body: w.toParts(),
    operation: `${o.replace ? "replace" : "add"} tc ${o.direction} bpf filter ${o.name} (prio ${o.priority}) on ifindex ${o.ifindex}`,
  };
}

/** Removes a filter; false when it (or the device, or its clsact) was not there. */
export async function detachTcBpf(
  sock: RtnlSocket,
  o: { ifindex: number; direction: TcDirection; priority: number; handle: number },
): Promise<boolean> {
  const w = new AttrWriter().raw(tcmsg(o.ifindex, o.handle, parentOf(o.direction), filterInfo(o.priority)));
  w.string(TCA_KIND, "bpf");
  return deleted(
    sock.request(
      RTM_DELTFILTER,
      0,
      w.toParts(),
      `delete tc ${o.direction} filter prio ${o.priority} on ifindex ${o.ifindex}`,
    ),
    "ENOENT",
    "ENODEV",
    "EINVAL",
  );
}

function parseFilter(m: NlMessage, direction: TcDirection): TcBpfFilter | undefined {
  const [hdr, attrs] = splitPayload(m.payload, TCMSG_LEN, "tc filter");
  if (attrString(attrs, TCA_KIND) !== "bpf") return undefined;
  const handle = hdr.readUInt32LE(8);
  // The dump also lists a chain's head without a handle: no filter there.
  if (handle === 0) return undefined;
  const opts = attrs.get(TCA_OPTIONS);
  const o = opts ? decodeAttrs(opts) : new Map<number, Buffer>();
  return {
    direction,
    priority: hdr.readUInt32LE(16) >>> 16,
    handle,
    programId: attrU32(o, TCA_BPF_ID) ?? 0,
    name: attrString(o, TCA_BPF_NAME) ?? "",
    directAction: ((attrU32(o, TCA_BPF_FLAGS) ?? 0) & TCA_BPF_FLAG_ACT_DIRECT) !== 0,
  };
}

/** The cls_bpf filters on one side of the device's clsact; [] without clsact (the kernel answers a
 * device that does not exist the same way on some versions). */
export async function listTcBpf(
  sock: RtnlSocket,
  ifindex: number,
  direction: TcDirection,
): Promise<TcBpfFilter[]> {
  let msgs: NlMessage[];
  try {
    msgs = await sock.dump(
      RTM_GETTFILTER,
      [tcmsg(ifindex, 0, parentOf(direction), 0)],
      `list tc ${direction} filters on ifindex ${ifindex}`,
    );
  } catch (e) {
    if (isAbsent(e, "EINVAL", "ENOENT")) return [];
    if (isAbsent(e, "ENODEV")) throw new NotFoundError(`ifindex ${ifindex} does not exist`, { cause: e });
    throw e;
  }
  return msgs.filter((m) => m.type === RTM_NEWTFILTER).flatMap((m) => parseFilter(m, direction) ?? []);
}
