// nkitd as a member of a Nomad cluster (`nomad.cluster:`): joins with this node's name and addresses,
// takes its pod CIDRs from the claim, and turns the other nodes' claims into peers routed like
// static ones (./peers.ts). Off when nomad.cluster.cidrs is empty.
import { hostname } from "node:os";
import { join } from "node:path";
import { ConfigError } from "../errors.js";
import type { Logger } from "../log.js";
import type { NomadClient } from "../nomad/client.js";
import { ClusterMembership } from "../nomad/cluster-membership.js";
import { NodeClaims, type NodeRecord } from "../nomad/node-claims.js";
import { IpAddress, IpPrefix } from "../util/ip.js";
import { type NkitdConfig, NODE_NAME } from "./config.js";
import type { Peer } from "./peers.js";
import { uplinkAddresses } from "./uplinks.js";

/** How long a first join waits for Nomad (inside systemd's 60 s start timeout). */
const JOIN_WAIT_MS = 40_000;

/** nomad.cluster.nodeName, or the host name when it is a usable node name. */
export function clusterNodeName(config: NkitdConfig): string {
  if (config.nomad.cluster.nodeName) return config.nomad.cluster.nodeName;
  const host = hostname().toLowerCase();
  if (!NODE_NAME.test(host)) {
    throw new ConfigError(
      "nomad.cluster.nodeName",
      `is empty and the host name "${host}" is not a node name`,
      "set nomad.cluster.nodeName (lowercase letters, digits, '.' and '-')",
    );
  }
  return host;
}

/** The configured addresses, else the uplinks' first global address of each cluster family. */
async function nodeAddresses(config: NkitdConfig, uplinks: readonly string[]): Promise<string[]> {
  if (config.nomad.cluster.address.length > 0) return [...config.nomad.cluster.address];
  const families = new Set(config.nomad.cluster.cidrs.map((c) => IpPrefix.parse(c).family));
  const found = await uplinkAddresses(uplinks);
  const first = (f: "ipv4" | "ipv6") => found.find((u) => u[f])?.[f];
  return [families.has(4) ? first("ipv4") : undefined, families.has(6) ? first("ipv6") : undefined].filter(
    (a): a is string => a !== undefined,
  );
}

export interface ClusterOptions {
  config: NkitdConfig;
  nomad: NomadClient;
  uplinks: readonly string[];
  onNodes: (others: NodeRecord[]) => Promise<void>;
  log: Logger;
}

export async function joinCluster(o: ClusterOptions): Promise<ClusterMembership> {
  const cl = o.config.nomad.cluster;
  const name = clusterNodeName(o.config);
  const layout = {
    clusterCIDRs: cl.cidrs.map((c) => IpPrefix.parse(c)),
    nodeMask: { 4: cl.nodeMask.ipv4, 6: cl.nodeMask.ipv6 },
  };
  const addresses = async () => {
    const a = await nodeAddresses(o.config, o.uplinks);
    for (const c of layout.clusterCIDRs) {
      if (!a.some((x) => IpAddress.parse(x).family === c.family)) {
        o.log.warn(
          { uplinks: o.uplinks, cidr: c.text },
          `this node has no IPv${c.family} address to publish: other nodes cannot route its IPv${c.family} pods (set nomad.cluster.address)`,
        );
      }
    }
    return a;
  };
  const membership = await ClusterMembership.join(
    {
      claims: new NodeClaims({ client: o.nomad, path: cl.variable }),
      layout,
      name,
      addresses,
      statePath: join(o.config.paths.state, "cluster.json"),
      ttlMs: cl.ttl * 1000,
      onNodes: o.onNodes,
      log: o.log,
    },
    JOIN_WAIT_MS,
  );
  return membership;
}

/** The other nodes as peers to route to. */
export function clusterPeers(nodes: readonly NodeRecord[]): Peer[] {
  return nodes.map((n) => ({ name: n.name, address: n.addresses, podCIDRs: n.podCIDRs }));
}
