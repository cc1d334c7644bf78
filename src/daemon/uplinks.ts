// Uplink discovery: with no configured uplinks, the devices holding a default route face the outside.
import type { Rtnl } from "../netlink/index.js";

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
