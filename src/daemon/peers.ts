// Routes to other nkit hosts' pods: each peer's pod CIDR (static `peers:` now, Nomad's node claims
// later) is routed to the peer's address of that family, so pods reach pods on other hosts with their
// own addresses (masquerade leaves these CIDRs alone). nkitd marks its routes with its own routing
// protocol number, so it replaces and removes only those: a peer that left loses its routes at the
// next sync, and nothing an operator added is touched.
import type { Logger } from "../log.js";
import { Rtnl } from "../netlink/index.js";
import { IpAddress, IpPrefix } from "../util/ip.js";

/** RTPROT_* of nkitd's peer routes (`ip route show proto 188`). */
export const NKIT_ROUTE_PROTOCOL = 188;

export interface Peer {
  name: string;
  address: readonly string[];
  podCIDRs: readonly string[];
}

export interface PeerRoute {
  peer: string;
  podCIDR: string;
  via: string;
  /** "installed", or why not. */
  state: string;
}

/** Brings nkitd's routes in the host netns to exactly the peers' pod CIDRs; returns each route's state. */
export async function syncPeerRoutes(peers: readonly Peer[], log?: Logger): Promise<PeerRoute[]> {
  const host = await Rtnl.host();
  try {
    const out: PeerRoute[] = [];
    const wanted = new Set<string>();
    for (const p of peers) {
      for (const text of p.podCIDRs) {
        const cidr = IpPrefix.parse(text);
        const via = p.address.find((a) => IpAddress.parse(a).family === cidr.family) ?? "";
        const route: PeerRoute = { peer: p.name, podCIDR: cidr.toString(), via, state: "installed" };
        wanted.add(route.podCIDR);
        try {
          if (!via) throw new Error(`peer ${p.name} has no IPv${cidr.family} address`);
          await host.replaceRoute({
            dst: route.podCIDR,
            family: cidr.family,
            gateway: via,
            protocol: NKIT_ROUTE_PROTOCOL,
          });
        } catch (e) {
          route.state = (e as Error).message;
          log?.error(
            { err: e, peer: p.name, podCIDR: route.podCIDR, via },
            `no route to peer ${p.name}'s pods`,
          );
        }
        out.push(route);
      }
    }
    for (const family of [4, 6] as const) {
      for (const r of await host.listRoutes({ family })) {
        if (r.protocol !== NKIT_ROUTE_PROTOCOL || wanted.has(r.dst)) continue;
        await host
          .deleteRoute({ dst: r.dst, family, protocol: NKIT_ROUTE_PROTOCOL })
          .catch((e: unknown) =>
            log?.warn({ err: e, dst: r.dst }, "cannot remove the route of a peer that left"),
          );
        log?.info({ dst: r.dst }, "removed the route of a peer that left");
      }
    }
    return out;
  } finally {
    await host.close();
  }
}
