// Uplink discovery: with no configured uplinks, the devices holding a default route face the outside.
import type { Address, AddressFilter, Rtnl } from "../netlink/index.js";

/** RT_SCOPE_UNIVERSE: global addresses (not loopback, not link-local). */
const SCOPE_UNIVERSE = 0;

/** The host's global addresses (host ports and masquerade use these), optionally of one device. */
export async function globalAddresses(host: Rtnl, filter: AddressFilter = {}): Promise<Address[]> {
  return (await host.listAddresses(filter)).filter((a) => a.scope === SCOPE_UNIVERSE);
}

export async function defaultRouteDevices(host: Rtnl): Promise<string[]> {
  const names = new Set<string>();
  const links = new Map((await host.listLinks()).map((l) => [l.index, l.name]));
  for (const r of await host.listRoutes()) {
    if (r.dst !== "default" || r.oif === undefined) continue;
    const name = links.get(r.oif);
    if (name) names.add(name);
  }
  return [...names].sort();
}
