// Host-side device names are derived from the endpoint id, so a restarted nkitd (or an operator)
// can find an endpoint's device without any state: "nk" + 11 hex chars of sha256(id) = 13 chars,
// inside IFNAMSIZ with room for the kernel's own suffixes.
import { createHash } from "node:crypto";

const HOST_IF_PREFIX = "nk";

export function hostIfName(endpointId: string): string {
  return HOST_IF_PREFIX + createHash("sha256").update(endpointId).digest("hex").slice(0, 11);
}

export function isHostIfName(name: string): boolean {
  return /^nk[0-9a-f]{11}$/.test(name);
}
