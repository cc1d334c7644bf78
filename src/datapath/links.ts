// The programs that run on an endpoint's host device. veth: cls_bpf filters (direct action) on the
// device's clsact qdisc, which outlive the process by themselves and get a new program by an atomic
// replace; a tcx link insert or delete would cost an RCU grace period under RTNL each (~12 ms here
// against ~0.3 ms; see bench/README.md). netkit: bpf_links on the primary and the peer (netkit has
// no other attach point), pinned under the bpffs dir so they outlive the process, and adopted after
// a restart by swapping the program under the pinned link (BPF_LINK_UPDATE): traffic never stops.
import { existsSync } from "node:fs";
import type { AttachPoint } from "../bpf/constants.js";
import { BpfLink, queryAttached } from "../bpf/link.js";
import { type PinDir, removePin } from "../bpf/pins.js";
import type { BpfProgram } from "../bpf/program.js";
import { NotFoundError } from "../errors.js";
import type { TcBpfFilter, TcDirection } from "../netlink/index.js";
import { settleAll } from "../util/settle.js";
import type { DatapathContext } from "./context.js";

const LINK_PINS = { from: "from-container", to: "to-container" } as const;

/** veth: the side of the host device each program runs on, as its one cls_bpf filter. */
const TC_SIDES = { from: "ingress", to: "egress" } as const satisfies Record<string, TcDirection>;
const TC_FILTER = { priority: 1, handle: 1 } as const;

const programOf = (dp: DatapathContext, which: "from" | "to"): BpfProgram => {
  if (which === "from") return dp.progs.fromContainer;
  return dp.mode === "netkit" ? dp.progs.toContainerNetkit : dp.progs.toContainer;
};

/** Puts (or, with replace, swaps in) both programs as the device's cls_bpf filters, in one batch:
 * a filter refused because clsact failed reports the clsact failure first. */
async function attachTcFilters(dp: DatapathContext, ifindex: number, replace: boolean): Promise<void> {
  const b = dp.host.batch().ensureClsact(ifindex);
  for (const which of ["from", "to"] as const) {
    const prog = programOf(dp, which);
    b.attachTcBpf({
      ifindex,
      direction: TC_SIDES[which],
      progFd: prog.fd,
      name: prog.name,
      ...TC_FILTER,
      replace,
    });
  }
  await b.commit();
}

/** veth: whether both filters are on the device (someone may have removed them with tc). */
async function tcFiltersAttached(dp: DatapathContext, ifindex: number): Promise<boolean> {
  for (const direction of Object.values(TC_SIDES)) {
    const filters = await dp.host.listTcBpf(ifindex, direction);
    const ours = (x: TcBpfFilter) =>
      x.priority === TC_FILTER.priority && x.handle === TC_FILTER.handle && x.directAction;
    if (!filters.some(ours)) return false;
  }
  return true;
}

/** netkit: attaches one endpoint program as a link on the pair and pins it under dir. */
async function attachNetkitLink(
  dp: DatapathContext,
  dir: PinDir,
  ifindex: number,
  which: "from" | "to",
): Promise<void> {
  const link = await BpfLink.attachNetkitAsync(programOf(dp, which), {
    primaryIfindex: ifindex,
    kind: which === "from" ? "peer" : "primary",
  });
  try {
    link.pin(dir.path(LINK_PINS[which]));
  } finally {
    link.close();
  }
}

/**
 * What a wiring must attach before the pod may send: veth, both filters (one batch, no grace
 * period); netkit, the from-container link on the peer, the only one that polices the pod. Returns
 * the netkit to-container link's attach, for the caller to run after the pod is up: that program
 * only counts what the primary delivers to the pod (policy pass lets it through meanwhile), and
 * its attach is a second RCU grace period under RTNL (~20 ms in the VM lane) no pod should wait for.
 */
export async function attachGatingLinks(
  dp: DatapathContext,
  hostName: string,
  ifindex: number,
): Promise<(() => Promise<void>) | undefined> {
  if (dp.mode === "veth") {
    await attachTcFilters(dp, ifindex, false);
    return undefined;
  }
  const dir = dp.pins.sub("endpoints").sub(hostName).ensure();
  await attachNetkitLink(dp, dir, ifindex, "from");
  return () => attachNetkitLink(dp, dir, ifindex, "to");
}

/**
 * Whether the endpoint's programs are in place: veth, both filters on the device; netkit, both link
 * pins there (they go when someone clears the bpffs dir, and the links with them).
 */
export async function endpointProgramsAttached(
  dp: DatapathContext,
  hostName: string,
  ifindex: number,
): Promise<boolean> {
  if (dp.mode === "veth") return tcFiltersAttached(dp, ifindex);
  const dir = dp.pins.sub("endpoints").sub(hostName);
  return existsSync(dir.path(LINK_PINS.from)) && existsSync(dir.path(LINK_PINS.to));
}

/**
 * Puts the current programs in place on an endpoint's device (a restart, or programs removed by
 * hand). veth: the filters get the new programs by replace; links an earlier build pinned (tcx)
 * are let go only once the filters run, and tcx runs first while both are there, so no packet
 * passes unprocessed. netkit: the program is swapped under each pinned link, attaching afresh
 * where a link is missing or no longer runs on the device.
 */
export async function adoptEndpointLinks(
  dp: DatapathContext,
  hostName: string,
  ifindex: number,
): Promise<void> {
  const dir = dp.pins.sub("endpoints").sub(hostName);
  if (dp.mode === "veth") {
    await attachTcFilters(dp, ifindex, true);
    dir.removeAll();
    return;
  }
  // Each link on its own: a missing one (a crash before a wiring's deferred to-container attach,
  // or a pin removed by hand) is attached afresh while the other keeps running.
  const missing = (["from", "to"] as const).filter(
    (which) => !adoptPinnedLink(dir.path(LINK_PINS[which]), programOf(dp, which), ifindex),
  );
  if (missing.length === 0) return;
  dir.ensure();
  await settleAll(missing.map((which) => attachNetkitLink(dp, dir, ifindex, which)));
}

/**
 * Swaps the program under a pinned link. Returns false when there is no usable link (no pin, or
 * the device is gone): the caller then attaches afresh.
 */
export function adoptPinnedLink(pin: string, prog: BpfProgram, ifindex: number, update = true): boolean {
  let link: BpfLink;
  try {
    link = BpfLink.fromPin(pin);
  } catch (e) {
    if (e instanceof NotFoundError) return false;
    throw e;
  }
  try {
    const info = link.info();
    // The kernel reports a netkit peer link's ifindex as the peer's (inside the pod netns), so ask
    // the host device which links it runs instead of comparing ifindexes.
    if (!info.attached || !info.attachPoint || !linkRunsOn(ifindex, info.attachPoint, info.id)) {
      removePin(pin);
      return false;
    }
    if (update) link.update(prog);
    return true;
  } finally {
    link.close();
  }
}

function linkRunsOn(ifindex: number, point: AttachPoint, linkId: number): boolean {
  try {
    return queryAttached(ifindex, point).programs.some((p) => p.linkId === linkId);
  } catch {
    return false;
  }
}
