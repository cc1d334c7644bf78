// Pod CIDR claims of the nkit hosts of a Nomad cluster, kept in one Nomad Variable (default
// nkit/cluster): every node's name, address and pod CIDR per family, carved out of the cluster CIDRs.
// All changes are check-and-set on that one variable, so two nodes can never hold the same CIDR, also
// when they claim at the same moment: the loser of a race gets HTTP 409, re-reads and tries again.
// A node keeps its CIDRs across restarts (it claims again by name); a clean leave releases them; a
// node that vanished keeps them until an operator forgets it or its heartbeat is older than a TTL.
import { NomadError } from "../errors.js";
import { IpAddress, type IpFamily, IpPrefix } from "../util/ip.js";
import type { NomadClient } from "./client.js";

export interface NodeRecord {
  name: string;
  /** Where other nodes route this node's pod CIDRs: at most one address per family. */
  addresses: string[];
  /** One per family of the cluster CIDRs. */
  podCIDRs: string[];
  /** RFC 3339: when the node last claimed or renewed. */
  heartbeatAt: string;
}

export interface ClusterLayout {
  /** At most one per family, e.g. 10.48.0.0/16 and fd48::/56. */
  clusterCIDRs: readonly IpPrefix[];
  /** The prefix length of one node's pod CIDR per family, e.g. {4: 24, 6: 64}. */
  nodeMask: Readonly<Record<IpFamily, number>>;
}

interface Table {
  nodes: Record<string, NodeRecord>;
}

/** The i-th subnet of length `mask` in `cluster`. */
function subnet(cluster: IpPrefix, mask: number, i: bigint): IpPrefix {
  const step = 1n << BigInt(cluster.network.bits - mask);
  return IpPrefix.of(IpAddress.fromValue(cluster.family, cluster.network.value + i * step), mask);
}

export interface ClaimingNode {
  name: string;
  addresses: string[];
  /**
   * The CIDRs this node used before (its saved claim): taken again when still free, so a node an
   * operator forgot while it ran keeps its pods' addresses.
   */
  prefer?: readonly string[];
}

/**
 * The table after `node` claimed (or renewed) its CIDRs: a node already in it keeps its CIDRs, a new
 * one gets its preferred subnet when free, else the lowest free subnet per family. Throws when a
 * family's cluster CIDR is full.
 */
export function withClaim(table: Table, node: ClaimingNode, layout: ClusterLayout, now: Date): Table {
  const have = table.nodes[node.name];
  let podCIDRs = have?.podCIDRs;
  if (!podCIDRs) {
    const taken = new Set(Object.values(table.nodes).flatMap((n) => n.podCIDRs));
    podCIDRs = layout.clusterCIDRs.map((cluster) => {
      const mask = layout.nodeMask[cluster.family];
      if (!(mask >= cluster.prefixLength && mask <= cluster.network.bits)) {
        throw new NomadError(
          `a node's IPv${cluster.family} pod CIDR /${mask} does not fit in the cluster CIDR ${cluster}`,
        );
      }
      const preferred = node.prefer?.find((text) => {
        const p = IpPrefix.parse(text);
        return p.family === cluster.family && p.prefixLength === mask && cluster.contains(p.network);
      });
      if (preferred && !taken.has(preferred)) return preferred;
      const count = 1n << BigInt(mask - cluster.prefixLength);
      for (let i = 0n; i < count && i < 1n << 20n; i++) {
        const c = subnet(cluster, mask, i).toString();
        if (!taken.has(c)) return c;
      }
      throw new NomadError(
        `the cluster CIDR ${cluster} has no free /${mask} left for node ${node.name}: forget departed nodes (nkit node forget NAME) or widen it`,
      );
    });
  }
  return {
    nodes: {
      ...table.nodes,
      [node.name]: {
        name: node.name,
        addresses: [...node.addresses],
        podCIDRs,
        heartbeatAt: now.toISOString(),
      },
    },
  };
}

export interface NodeClaimsOptions {
  client: NomadClient;
  /** The variable's path; default nkit/cluster. */
  path?: string;
  /** The variable's namespace; default "default". */
  namespace?: string;
}

/** Attempts at one check-and-set change before giving up (each conflict means another node won). */
const MAX_ATTEMPTS = 50;

export class NodeClaims {
  private readonly path: string;
  private readonly namespace: string;

  constructor(private readonly opts: NodeClaimsOptions) {
    this.path = opts.path ?? "nkit/cluster";
    this.namespace = opts.namespace ?? "default";
  }

  /** Where the claims live, for messages. */
  get where(): string {
    return `the Nomad Variable ${this.namespace}/${this.path}`;
  }

  /** Every node's claim. */
  async list(): Promise<NodeRecord[]> {
    const v = await this.read();
    return Object.values(v.table.nodes).sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  /** Claims (or renews) this node's pod CIDRs; returns its record. */
  async claim(node: ClaimingNode, layout: ClusterLayout): Promise<NodeRecord> {
    const t = await this.change((table) => withClaim(table, node, layout, new Date()));
    const mine = t.nodes[node.name];
    if (!mine) throw new NomadError(`node ${node.name} is missing from ${this.path} right after claiming`);
    return mine;
  }

  /** Releases a node's claim (a clean leave, or `nkit node forget`); false when it held none. */
  async release(name: string): Promise<boolean> {
    let held = false;
    await this.change((table) => {
      held = table.nodes[name] !== undefined;
      const { [name]: _gone, ...rest } = table.nodes;
      return { nodes: rest };
    });
    return held;
  }

  /** Releases the claims of nodes (but `keep`) whose heartbeat is older than ttlMs; returns their names. */
  async expire(ttlMs: number, now = new Date(), keep?: string): Promise<string[]> {
    let expired: string[] = [];
    await this.change((table) => {
      expired = Object.values(table.nodes)
        .filter((n) => n.name !== keep && now.getTime() - Date.parse(n.heartbeatAt) > ttlMs)
        .map((n) => n.name);
      return { nodes: Object.fromEntries(Object.entries(table.nodes).filter(([k]) => !expired.includes(k))) };
    });
    return expired;
  }

  /** Reads, applies fn and writes back with check-and-set, retrying while other nodes win the race. */
  private async change(fn: (t: Table) => Table): Promise<Table> {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const cur = await this.read();
      const next = fn(cur.table);
      if (JSON.stringify(next) === JSON.stringify(cur.table)) return next;
      if (await this.write(next, cur.modifyIndex)) return next;
      // Lost the race: back off a little (jittered) so the contenders spread out.
      await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 20 * (attempt + 1))));
    }
    throw new NomadError(`${this.path}: gave up after ${MAX_ATTEMPTS} check-and-set conflicts`);
  }

  private async read(): Promise<{ table: Table; modifyIndex: number }> {
    const v = await this.opts.client.variable(this.namespace, this.path);
    if (!v) return { table: { nodes: {} }, modifyIndex: 0 };
    const text = v.Items.table;
    if (text === undefined) return { table: { nodes: {} }, modifyIndex: v.ModifyIndex };
    let table: Table;
    try {
      table = JSON.parse(text) as Table;
    } catch (e) {
      throw new NomadError(`${this.path}: the item "table" is not JSON; fix or delete the variable`, {
        cause: e,
      });
    }
    if (typeof table !== "object" || table === null || typeof table.nodes !== "object") {
      throw new NomadError(`${this.path}: the item "table" has no "nodes"; fix or delete the variable`);
    }
    return { table, modifyIndex: v.ModifyIndex };
  }

  /** false when another write came first (check-and-set conflict). */
  private write(table: Table, modifyIndex: number): Promise<boolean> {
    return this.opts.client.putVariable(
      this.namespace,
      this.path,
      { table: JSON.stringify(table) },
      modifyIndex,
    );
  }
}
