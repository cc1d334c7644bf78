// BPF links: tcx and netkit (attach with mprog ordering) and cgroup socket-address hooks; pin,
// reopen from a pin, swap the program (BPF_LINK_UPDATE), detach, and query what is attached where.
import {
  AlreadyExistsError,
  BpfError,
  InvalidArgumentError,
  isNativeErrnoError,
  NotFoundError,
  NotSupportedError,
} from "../errors.js";
import { bpfAddon, type FdHandle, type NativeLinkCreateOptions, type NativeQuery } from "../native/bpf.js";
import {
  ATTACH_TYPE,
  type AttachPoint,
  attachPointOf,
  BPF,
  CGROUP_ATTACH_TYPE,
  type CgroupHook,
} from "./constants.js";
import { nativeCall, toBpfError } from "./errors.js";
import { OwnedFd, openPinned } from "./handle.js";
import { removePin } from "./pins.js";
import { NETKIT_FEATURE, probeNetkit, probeTcx, TCX_FEATURE } from "./probe.js";
import { BpfProgram } from "./program.js";

/** What a new link is ordered against: an attached link or program (by object or id). */
type AnchorTarget = BpfLink | BpfProgram | { linkId: number } | { programId: number };

/** Position in the attach point's chain. Without an anchor the link is appended ("last"). */
type Anchor = "first" | "last" | { before: AnchorTarget } | { after: AnchorTarget };

interface CommonAttachOptions {
  anchor?: Anchor;
  /** Fail with ESTALE unless the chain is still at this revision (from queryAttached). */
  expectedRevision?: bigint | number;
}

interface TcxAttachOptions extends CommonAttachOptions {
  ifindex: number;
  direction: "ingress" | "egress";
}

interface NetkitAttachOptions extends CommonAttachOptions {
  /** ifindex of the netkit primary (host side); peer programs are attached through it too. */
  primaryIfindex: number;
  kind: "primary" | "peer";
}

export interface LinkInfo {
  id: number;
  type: number;
  typeName: string;
  programId: number;
  /** 0 once detached or when the device is gone. */
  ifindex?: number;
  attachPoint?: AttachPoint;
  /** cgroup links: the cgroup's id (0 once detached or the cgroup is gone) and the hook. */
  cgroupId?: bigint;
  cgroupHook?: CgroupHook;
  /** False after detach() or once the device was deleted (the link lives on while pinned). */
  attached: boolean;
}

interface AttachedPrograms {
  revision: bigint;
  /** In execution order; linkId 0 marks a legacy (non-link) attachment. */
  programs: { programId: number; linkId: number }[];
}

function anchorTargetOptions(t: AnchorTarget): NativeLinkCreateOptions {
  if (t instanceof BpfLink) return { flags: BPF.F_LINK, relative: t.handle };
  if (t instanceof BpfProgram) return { flags: 0, relative: t.handle };
  if ("linkId" in t) return { flags: BPF.F_LINK, relativeId: t.linkId };
  return { flags: 0, relativeId: t.programId };
}

function anchorOptions(anchor: Anchor | undefined): NativeLinkCreateOptions {
  if (anchor === undefined) return {};
  // BEFORE/AFTER without a relative object means the very front/back of the chain
  if (anchor === "first") return { flags: BPF.F_BEFORE };
  if (anchor === "last") return { flags: BPF.F_AFTER };
  const [dir, target] = "before" in anchor ? [BPF.F_BEFORE, anchor.before] : [BPF.F_AFTER, anchor.after];
  const o = anchorTargetOptions(target);
  return { ...o, flags: (o.flags ?? 0) | dir };
}

function describeAnchor(anchor: Anchor | undefined): string {
  if (anchor === undefined || typeof anchor === "string") return anchor ?? "last";
  const [rel, t] = "before" in anchor ? ["before", anchor.before] : ["after", anchor.after];
  if (t instanceof BpfLink) return `${rel} link ${t.pinnedPath ?? "(unpinned)"}`;
  if (t instanceof BpfProgram) return `${rel} program ${t.name}`;
  return "linkId" in t ? `${rel} link id ${t.linkId}` : `${rel} program id ${t.programId}`;
}

const UNSUPPORTED_CODES = new Set(["EINVAL", "EOPNOTSUPP", "ENOTSUPP", "ENOSYS"]);

function cgroupHookOf(attachType: number): CgroupHook | undefined {
  for (const [k, v] of Object.entries(CGROUP_ATTACH_TYPE)) if (v === attachType) return k as CgroupHook;
  return undefined;
}

/** A cgroup attach/query failure as the error that says what to fix. */
function cgroupError(e: unknown, path: string, what: string): Error {
  if (isNativeErrnoError(e)) {
    if (e.code === "ENOENT") return new NotFoundError(`${what}: no cgroup directory ${path}`, { cause: e });
    if (e.code === "ENOTDIR" || e.code === "EBADF") {
      return new InvalidArgumentError(
        `${what}: ${path} is not a cgroup v2 directory (find the cgroup2 mount in /proc/mounts)`,
        { cause: e },
      );
    }
    if (UNSUPPORTED_CODES.has(e.code)) {
      return new NotSupportedError(
        "cgroup socket-address BPF hooks",
        `a kernel with CONFIG_CGROUP_BPF and bpf_link support for cgroups (5.7+) (${e.message})`,
        { cause: e },
      );
    }
  }
  return toBpfError(e, what);
}

/** Turns an attach/query failure into the most useful error: missing kernel feature, device, anchor… */
function attachError(e: unknown, point: AttachPoint, ifindex: number, what: string, anchor?: Anchor): Error {
  if (isNativeErrnoError(e)) {
    const netkit = point.startsWith("netkit");
    if (UNSUPPORTED_CODES.has(e.code)) {
      const probe = netkit ? probeNetkit() : probeTcx();
      if (!probe.supported) {
        const f = netkit ? NETKIT_FEATURE : TCX_FEATURE;
        return new NotSupportedError(f.feature, `${f.need} (${probe.reason})`, { cause: e });
      }
      if (netkit) {
        return new BpfError(
          `${what}: ${e.message}: is ifindex ${ifindex} a netkit primary device (not the peer, not a veth)?`,
          e.code,
          { cause: e },
        );
      }
    }
    if (e.code === "ENODEV") {
      return new NotFoundError(
        `${what}: no network device with ifindex ${ifindex} in this network namespace`,
        {
          cause: e,
        },
      );
    }
    if (e.code === "ENOENT" && anchor !== undefined) {
      return new NotFoundError(
        `${what}: the anchor (${describeAnchor(anchor)}) is not attached at ${point} of ifindex ${ifindex}`,
        { cause: e },
      );
    }
    if (e.code === "EEXIST") {
      return new AlreadyExistsError(
        `${what}: this program is already attached at ${point} of ifindex ${ifindex}`,
        {
          cause: e,
        },
      );
    }
  }
  return toBpfError(e, what);
}

export class BpfLink {
  readonly #fd: OwnedFd;
  #pinnedPath: string | undefined;

  private constructor(handle: FdHandle, label: string, pinnedPath?: string) {
    this.#fd = new OwnedFd(handle, `BPF link ${label}`);
    this.#pinnedPath = pinnedPath;
  }

  /** Attaches program at tcx ingress/egress of ifindex (in the caller's network namespace). */
  static attachTcx(program: BpfProgram, opts: TcxAttachOptions): BpfLink {
    const point: AttachPoint = opts.direction === "ingress" ? "tcx-ingress" : "tcx-egress";
    return BpfLink.#attach(program, opts.ifindex, point, opts);
  }

  /** Attaches program to a netkit pair: "primary" runs for traffic towards the pod, "peer" for traffic from it. */
  static attachNetkit(program: BpfProgram, opts: NetkitAttachOptions): BpfLink {
    const point: AttachPoint = opts.kind === "primary" ? "netkit-primary" : "netkit-peer";
    return BpfLink.#attach(program, opts.primaryIfindex, point, opts);
  }

  /**
   * attachTcx off the JS thread. Each tcx/netkit attach waits for an RCU grace period in the
   * kernel; a daemon serving other requests must not block on it, and two attaches in flight at
   * once share one grace period.
   */
  static attachTcxAsync(program: BpfProgram, opts: TcxAttachOptions): Promise<BpfLink> {
    const point: AttachPoint = opts.direction === "ingress" ? "tcx-ingress" : "tcx-egress";
    return BpfLink.#attachAsync(program, opts.ifindex, point, opts);
  }

  static attachNetkitAsync(program: BpfProgram, opts: NetkitAttachOptions): Promise<BpfLink> {
    const point: AttachPoint = opts.kind === "primary" ? "netkit-primary" : "netkit-peer";
    return BpfLink.#attachAsync(program, opts.primaryIfindex, point, opts);
  }

  static #nativeOptions(opts: CommonAttachOptions): NativeLinkCreateOptions {
    const native = anchorOptions(opts.anchor);
    if (opts.expectedRevision !== undefined) native.expectedRevision = BigInt(opts.expectedRevision);
    return native;
  }

  static #attach(
    program: BpfProgram,
    ifindex: number,
    point: AttachPoint,
    opts: CommonAttachOptions,
  ): BpfLink {
    const what = `attaching BPF program ${program.name} at ${point} of ifindex ${ifindex}`;
    let h: FdHandle;
    try {
      h = bpfAddon().linkCreate(program.handle, ifindex, ATTACH_TYPE[point], BpfLink.#nativeOptions(opts));
    } catch (e) {
      throw attachError(e, point, ifindex, what, opts.anchor);
    }
    return new BpfLink(h, `${program.name}@${point}:${ifindex}`);
  }

  static async #attachAsync(
    program: BpfProgram,
    ifindex: number,
    point: AttachPoint,
    opts: CommonAttachOptions,
  ): Promise<BpfLink> {
    const what = `attaching BPF program ${program.name} at ${point} of ifindex ${ifindex}`;
    let h: FdHandle;
    try {
      h = await bpfAddon().linkCreateAsync(
        program.handle,
        ifindex,
        ATTACH_TYPE[point],
        BpfLink.#nativeOptions(opts),
      );
    } catch (e) {
      throw attachError(e, point, ifindex, what, opts.anchor);
    }
    return new BpfLink(h, `${program.name}@${point}:${ifindex}`);
  }

  /**
   * Attaches program at a socket-address hook of a cgroup v2 directory: it then runs for every
   * socket of every process in that cgroup and its descendants.
   */
  static attachCgroup(program: BpfProgram, cgroupPath: string, hook: CgroupHook): BpfLink {
    const what = `attaching BPF program ${program.name} at cgroup ${hook} of ${cgroupPath}`;
    let h: FdHandle;
    try {
      h = bpfAddon().cgroupLinkCreate(program.handle, cgroupPath, CGROUP_ATTACH_TYPE[hook]);
    } catch (e) {
      throw cgroupError(e, cgroupPath, what);
    }
    return new BpfLink(h, `${program.name}@cgroup-${hook}:${cgroupPath}`);
  }

  /** Reopens a pinned link (e.g. one created by a previous nkitd). */
  static fromPin(path: string): BpfLink {
    return new BpfLink(openPinned(path, "link"), path, path);
  }

  get handle(): FdHandle {
    return this.#fd.handle;
  }

  get closed(): boolean {
    return this.#fd.closed;
  }

  /** Where this link is pinned, if it was pinned or opened through this object. */
  get pinnedPath(): string | undefined {
    return this.#pinnedPath;
  }

  info(): LinkInfo {
    const i = nativeCall("reading BPF link info", () => bpfAddon().linkInfo(this.handle));
    const point = i.attachType === undefined ? undefined : attachPointOf(i.attachType);
    const hook =
      i.cgroupId === undefined || i.attachType === undefined ? undefined : cgroupHookOf(i.attachType);
    const attached =
      i.ifindex !== undefined ? i.ifindex !== 0 : i.cgroupId !== undefined ? i.cgroupId !== 0n : true;
    return {
      id: i.id,
      type: i.type,
      typeName: i.typeName,
      programId: i.progId,
      ...(i.ifindex === undefined ? {} : { ifindex: i.ifindex }),
      ...(point === undefined || i.cgroupId !== undefined ? {} : { attachPoint: point }),
      ...(i.cgroupId === undefined ? {} : { cgroupId: i.cgroupId }),
      ...(hook === undefined ? {} : { cgroupHook: hook }),
      attached,
    };
  }

  get id(): number {
    return this.info().id;
  }

  /** Pins the link: it then stays attached after this process exits, until unpinned and closed. */
  pin(path: string): void {
    nativeCall(`pinning BPF link at ${path}`, () => bpfAddon().objPin(this.handle, path));
    this.#pinnedPath = path;
  }

  /** Removes the pin; the link detaches once no fd (this one included) references it. */
  unpin(): boolean {
    const p = this.#pinnedPath;
    if (p === undefined) return false;
    this.#pinnedPath = undefined;
    return removePin(p);
  }

  /** Atomically replaces the program (BPF_LINK_UPDATE). With expected, fails unless that program is the current one. */
  update(program: BpfProgram, opts: { expected?: BpfProgram } = {}): void {
    const old = opts.expected?.handle ?? null;
    try {
      bpfAddon().linkUpdate(this.handle, program.handle, old);
    } catch (e) {
      if (isNativeErrnoError(e) && e.code === "EPERM" && old !== null) {
        throw new BpfError(
          `updating BPF link to program ${program.name}: the link does not run the expected program ${opts.expected?.name}`,
          e.code,
          { cause: e },
        );
      }
      throw toBpfError(e, `updating BPF link to program ${program.name}`);
    }
  }

  /** Detaches now, even while pinned or referenced elsewhere; the (now inert) link object remains until closed/unpinned. */
  detach(): void {
    nativeCall("detaching BPF link", () => bpfAddon().linkDetach(this.handle));
  }

  close(): void {
    this.#fd.close();
  }
}

const attached = (q: NativeQuery): AttachedPrograms => ({
  revision: q.revision,
  programs: q.programs.map((p) => ({ programId: p.progId, linkId: p.linkId })),
});

/** Programs attached at point of ifindex (in the caller's network namespace), with the chain revision. */
export function queryAttached(ifindex: number, point: AttachPoint): AttachedPrograms {
  try {
    return attached(bpfAddon().progQuery(ifindex, ATTACH_TYPE[point]));
  } catch (e) {
    throw attachError(e, point, ifindex, `querying ${point} of ifindex ${ifindex}`);
  }
}

/** Programs attached directly at a cgroup hook (not those inherited from its ancestors). */
export function queryCgroupAttached(cgroupPath: string, hook: CgroupHook): AttachedPrograms {
  try {
    return attached(bpfAddon().cgroupProgQuery(cgroupPath, CGROUP_ATTACH_TYPE[hook]));
  } catch (e) {
    throw cgroupError(e, cgroupPath, `querying cgroup ${hook} of ${cgroupPath}`);
  }
}
