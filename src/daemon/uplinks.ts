// Uplinks: with no configured uplinks, the devices holding a default route face the outside; their
// addresses are what masquerade translates to and what a Nomad cluster node publishes.
import type { UplinkAddresses } from "../masquerade/masquerade.js";
import { type Address, type AddressFilter, Rtnl } from "../netlink/index.js";

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

/** Each uplink's ifindex and first global address per family (uplinks without one left out). */
export async function uplinkAddresses(uplinks: readonly string[]): Promise<UplinkAddresses[]> {
  const host = await Rtnl.host();
  try {
    const out: UplinkAddresses[] = [];
    for (const name of uplinks) {
      const addrs = await globalAddresses(host, { link: name }).catch(() => []);
      const first = addrs[0];
      if (!first) continue;
      const u: UplinkAddresses = { ifindex: first.index };
      const v4 = addrs.find((a) => a.family === 4);
      const v6 = addrs.find((a) => a.family === 6);
      if (v4) u.ipv4 = v4.address;
      if (v6) u.ipv6 = v6.address;
      out.push(u);
    }
    return out;
  } finally {
    await host.close();
  }
}
