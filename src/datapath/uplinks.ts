// Uplinks: devices facing the outside, where nk_from_uplink (tcx ingress, first) sends traffic for
// local pods straight to them. The link is pinned under uplinks/<dev>/ and adopted on restart.
import { BpfLink } from "../bpf/link.js";
import type { DatapathContext } from "./context.js";
import { adoptPinnedLink } from "./links.js";

export async function attachUplink(dp: DatapathContext, ifName: string): Promise<void> {
  await ensureUplink(dp, ifName, true);
}

/**
 * Attaches nk_from_uplink unless the pinned link still runs on the device (a device deleted and
 * made again, the same name, has lost it); with `update`, a running one gets this process's
 * program (at start). Returns whether it attached anew. Throws NotFoundError without the device.
 */
export async function ensureUplink(dp: DatapathContext, ifName: string, update = false): Promise<boolean> {
  const link = await dp.host.requireLink(ifName);
  const dir = dp.pins.sub("uplinks").sub(ifName).ensure();
  const pin = dir.path("from-uplink");
  if (adoptPinnedLink(pin, dp.progs.fromUplink, link.index, update)) return false;
  const l = BpfLink.attachTcx(dp.progs.fromUplink, {
    ifindex: link.index,
    direction: "ingress",
    anchor: "first",
  });
  try {
    l.pin(pin);
  } finally {
    l.close();
  }
  return true;
}

export function detachUplink(dp: DatapathContext, ifName: string): boolean {
  return dp.pins.sub("uplinks").remove(ifName);
}
