// The bpf_links that run the programs on a device, pinned under the bpffs dir so they outlive the
// process: attached at wiring, adopted after a restart by swapping the program under the pinned
// link (BPF_LINK_UPDATE), so traffic never stops.
import { existsSync } from "node:fs";
import type { AttachPoint } from "../bpf/constants.js";
import { BpfLink, queryAttached } from "../bpf/link.js";
import { removePin } from "../bpf/pins.js";
import type { BpfProgram } from "../bpf/program.js";
import { NotFoundError } from "../errors.js";
import type { DatapathContext } from "./context.js";

const LINK_PINS = { from: "from-container", to: "to-container" } as const;

/** Attaches both endpoint programs concurrently (each attach waits for an RCU grace period) and
 * pins them under endpoints/<hostName>/. */
export async function attachEndpointLinks(
  dp: DatapathContext,
  hostName: string,
  ifindex: number,
): Promise<void> {
  const dir = dp.pins.sub("endpoints").sub(hostName).ensure();
  const attach = async (prog: BpfProgram, which: "from" | "to"): Promise<void> => {
    const link =
      dp.mode === "netkit"
        ? await BpfLink.attachNetkitAsync(prog, {
            primaryIfindex: ifindex,
            kind: which === "from" ? "peer" : "primary",
          })
        : await BpfLink.attachTcxAsync(prog, {
            ifindex,
            direction: which === "from" ? "ingress" : "egress",
          });
    try {
      link.pin(dir.path(LINK_PINS[which]));
    } finally {
      link.close();
    }
  };
  const results = await Promise.allSettled([
    attach(dp.progs.fromContainer, "from"),
    attach(dp.progs.toContainer, "to"),
  ]);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
}

/** Whether both of an endpoint's link pins are there (they go when someone clears the bpffs dir). */
export function endpointLinksPinned(dp: DatapathContext, hostName: string): boolean {
  const dir = dp.pins.sub("endpoints").sub(hostName);
  return existsSync(dir.path(LINK_PINS.from)) && existsSync(dir.path(LINK_PINS.to));
}

/** Puts the current programs under an endpoint's pinned links, attaching afresh where a link is
 * missing or no longer runs on the device. */
export async function adoptEndpointLinks(
  dp: DatapathContext,
  hostName: string,
  ifindex: number,
): Promise<void> {
  const dir = dp.pins.sub("endpoints").sub(hostName);
  const fromOk = adoptPinnedLink(dir.path(LINK_PINS.from), dp.progs.fromContainer, ifindex);
  const toOk = adoptPinnedLink(dir.path(LINK_PINS.to), dp.progs.toContainer, ifindex);
  if (!fromOk || !toOk) {
    dir.removeAll();
    await attachEndpointLinks(dp, hostName, ifindex);
  }
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
