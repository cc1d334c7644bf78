// This node's membership of the nkit cluster kept in one Nomad Variable (./node-claims.ts): at start
// it claims its pod CIDRs (the ones it held before when still free), then it watches the table and
// hands every change of the other nodes (joined, left, moved, forgotten) to the caller, which routes
// to them. It renews its heartbeat, and with a TTL frees the claims of nodes silent for longer.
// The last table is kept in the state dir: while Nomad is unreachable, also across an nkitd restart,
// the node keeps its CIDRs and its routes to the others; only a first join needs Nomad.
import { rmSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { z } from "zod";
import { NomadError } from "../errors.js";
import type { Logger } from "../log.js";
import { type DocumentFormat, readDocument, writeDocument } from "../state/json-store.js";
import { IpPrefix } from "../util/ip.js";
import type { ClusterLayout, NodeClaims, NodeRecord } from "./node-claims.js";

export interface ClusterMembershipOptions {
  claims: NodeClaims;
  layout: ClusterLayout;
  /** This node's name in the table. */
  name: string;
  /** This node's addresses for the other nodes, one per family: read again at every heartbeat. */
  addresses: () => Promise<string[]>;
  /** Where the last table is kept (a JSON document). */
  statePath: string;
  /** A node whose heartbeat is older than this loses its claim; 0 = never (only `nkit node forget`). */
  ttlMs: number;
  /** Receives the other nodes whenever their names, addresses or CIDRs change. */
  onNodes: (others: NodeRecord[]) => Promise<void>;
  log?: Logger;
  /** How often the table is read; default 2 s. */
  pollMs?: number;
  /** How often this node renews its claim; default 30 s, and at most a third of the TTL. */
  heartbeatMs?: number;
}

export interface ClusterStatus {
  node: string;
  podCIDRs: string[];
  /** The last read of the table succeeded. */
  connected: boolean;
  lastError: string;
  /** When the table was last read from Nomad (RFC 3339; empty before the first time). */
  syncedAt: string;
}

const nodeRecord = z.object({
  name: z.string(),
  addresses: z.array(z.string()),
  podCIDRs: z.array(z.string()),
  heartbeatAt: z.string(),
});
const saved: DocumentFormat<{ self: NodeRecord; nodes: NodeRecord[] }> = {
  version: 1,
  shape: z.object({ self: nodeRecord, nodes: z.array(nodeRecord) }),
  indent: 2,
};

const CONFLICT = "this node's pod CIDRs were given to another node";

/** What routing to a node depends on (not its heartbeat). */
const routed = (nodes: readonly NodeRecord[]): string =>
  JSON.stringify(nodes.map((n) => [n.name, n.addresses, n.podCIDRs]));

export class ClusterMembership {
  private others: NodeRecord[];
  private readonly stopping = new AbortController();
  private loop: Promise<void> | undefined;
  private lastHeartbeat = 0;
  /** Since when every read of the table succeeded (0: the last one failed, or none yet). */
  private reachableSince = 0;
  private readonly state: ClusterStatus;

  private constructor(
    private readonly opts: ClusterMembershipOptions,
    private self: NodeRecord,
    nodes: NodeRecord[],
    connected: boolean,
    lastError: string,
  ) {
    this.others = nodes.filter((n) => n.name !== self.name);
    this.state = {
      node: self.name,
      podCIDRs: [...self.podCIDRs],
      connected,
      lastError,
      syncedAt: connected ? new Date().toISOString() : "",
    };
    if (connected) this.lastHeartbeat = Date.now();
  }

  /**
   * Claims this node's pod CIDRs, retrying for up to waitMs while Nomad cannot be reached; with a
   * claim saved by an earlier run it does not wait: it goes on with that one and claims later.
   */
  static async join(opts: ClusterMembershipOptions, waitMs: number): Promise<ClusterMembership> {
    const before = ClusterMembership.saved(opts);
    const deadline = Date.now() + waitMs;
    for (let attempt = 1; ; attempt++) {
      try {
        const self = await opts.claims.claim(
          {
            name: opts.name,
            addresses: await opts.addresses(),
            ...(before ? { prefer: before.self.podCIDRs } : {}),
          },
          opts.layout,
        );
        const nodes = await opts.claims.list();
        writeDocument(opts.statePath, { self, nodes }, saved);
        opts.log?.info({ node: self.name, podCIDRs: self.podCIDRs }, "claimed this node's pod CIDRs");
        return new ClusterMembership(opts, self, nodes, true, "");
      } catch (e) {
        const why = (e as Error).message;
        if (before) {
          opts.log?.warn(
            { err: e, podCIDRs: before.self.podCIDRs },
            "Nomad unreachable: this node goes on with its last claim and the last known nodes",
          );
          return new ClusterMembership(opts, before.self, before.nodes, false, why);
        }
        if (Date.now() >= deadline || !(e instanceof NomadError && e.retryable)) {
          throw new NomadError(
            `cannot claim this node's pod CIDRs in ${opts.claims.where}: ${why}; a node joins the cluster only with Nomad reachable (start the Nomad agent first; systemd restarts nkitd)`,
            { cause: e },
          );
        }
        if (attempt === 1) opts.log?.warn({ err: e }, "waiting for Nomad to claim this node's pod CIDRs");
        await sleep(1000);
      }
    }
  }

  /** The claim a previous run saved, when it still fits this node's name and cluster CIDRs. */
  private static saved(
    opts: ClusterMembershipOptions,
  ): { self: NodeRecord; nodes: NodeRecord[] } | undefined {
    const doc = readDocument(opts.statePath, saved);
    if (!doc || doc.self.name !== opts.name) return undefined;
    const fits = doc.self.podCIDRs.every((text) => {
      const p = IpPrefix.parse(text);
      return opts.layout.clusterCIDRs.some((c) => c.family === p.family && c.contains(p.network));
    });
    return fits ? doc : undefined;
  }

  get podCIDRs(): string[] {
    return [...this.self.podCIDRs];
  }

  /** The other nodes as last read (or saved). */
  peers(): NodeRecord[] {
    return this.others.map((n) => ({ ...n }));
  }

  /** Every node of the table, this one first. */
  nodes(): NodeRecord[] {
    return [{ ...this.self }, ...this.peers()];
  }

  status(): ClusterStatus {
    return { ...this.state, podCIDRs: [...this.state.podCIDRs] };
  }

  /** Follows the table until stop(). */
  start(): void {
    this.loop ??= this.follow();
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    await this.loop;
  }

  /** A clean leave: stops following, frees this node's claim and forgets the saved one. */
  async leave(): Promise<void> {
    await this.stop();
    await this.opts.claims.release(this.self.name);
    rmSync(this.opts.statePath, { force: true });
    this.opts.log?.info({ node: this.self.name, podCIDRs: this.self.podCIDRs }, "left the cluster");
  }

  /** Frees another node's claim (it left without a clean leave); false when it held none. */
  async forget(name: string): Promise<boolean> {
    if (name === this.self.name) {
      throw new NomadError(`${name} is this node: use nkit node leave`);
    }
    const held = await this.opts.claims.release(name);
    await this.refresh();
    return held;
  }

  private heartbeatMs(): number {
    const base = this.opts.heartbeatMs ?? 30_000;
    return this.opts.ttlMs > 0 ? Math.min(base, Math.floor(this.opts.ttlMs / 3)) : base;
  }

  private async follow(): Promise<void> {
    const signal = this.stopping.signal;
    while (!signal.aborted) {
      await this.refresh().catch((e: unknown) => {
        if (this.state.connected) this.opts.log?.warn({ err: e }, "the cluster's node table is unreachable");
        this.state.connected = false;
        this.state.lastError = (e as Error).message;
        this.reachableSince = 0;
      });
      await sleep(this.opts.pollMs ?? 2000, undefined, { signal }).catch(() => undefined);
    }
  }

  /** Reads the table (renewing this node's claim when due or missing) and passes on what changed. */
  private async refresh(): Promise<void> {
    let nodes = await this.opts.claims.list();
    if (this.reachableSince === 0) this.reachableSince = Date.now();
    const due = Date.now() - this.lastHeartbeat >= this.heartbeatMs();
    if (due || !nodes.some((n) => n.name === this.self.name)) {
      // Only after a whole TTL of reaching Nomad: after an outage every node's heartbeat is old, and
      // the others need that long to renew theirs before any of them looks gone.
      if (
        this.opts.ttlMs > 0 &&
        this.reachableSince > 0 &&
        Date.now() - this.reachableSince > this.opts.ttlMs
      ) {
        const gone = await this.opts.claims.expire(this.opts.ttlMs, new Date(), this.self.name);
        if (gone.length > 0) this.opts.log?.warn({ nodes: gone }, "freed the claims of nodes past their TTL");
      }
      const mine = await this.opts.claims.claim(
        { name: this.self.name, addresses: await this.opts.addresses(), prefer: this.self.podCIDRs },
        this.opts.layout,
      );
      this.lastHeartbeat = Date.now();
      if (mine.podCIDRs.join() !== this.self.podCIDRs.join()) {
        // Forgotten while running and the CIDRs went to another node: two nodes now route the same
        // addresses. Only an operator can settle that (drain this node, leave, join again).
        this.state.lastError = `${CONFLICT}: it held ${this.self.podCIDRs.join(", ")}, now ${mine.podCIDRs.join(", ")} in ${this.opts.claims.where}, but its pods keep the old ones; drain it, run nkit node leave and start nkitd again`;
        this.opts.log?.error({ held: this.self.podCIDRs, claimed: mine.podCIDRs }, this.state.lastError);
      }
      this.self = { ...this.self, addresses: mine.addresses, heartbeatAt: mine.heartbeatAt };
      nodes = await this.opts.claims.list();
    }
    const others = nodes.filter((n) => n.name !== this.self.name);
    const changed = routed(others) !== routed(this.others);
    this.others = others;
    if (!this.state.connected) this.opts.log?.info("the cluster's node table is reachable again");
    this.state.connected = true;
    if (!this.state.lastError.startsWith(CONFLICT)) this.state.lastError = "";
    this.state.syncedAt = new Date().toISOString();
    if (changed || due) writeDocument(this.opts.statePath, { self: this.self, nodes }, saved);
    if (changed) {
      this.opts.log?.info({ nodes: others.map((n) => n.name) }, "the cluster's nodes changed");
      await this.opts.onNodes(this.peers());
    }
  }
}
