// Pod CIDR claims in a Nomad Variable, against a real Nomad v1.6.5 agent: nodes that claim at the
// same moment never get the same CIDR (check-and-set), a node claiming again keeps its CIDRs, a
// released or expired claim is handed out again, and the variable holds exactly the claims.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NomadClient } from "../../src/nomad/client.js";
import { NodeClaims } from "../../src/nomad/node-claims.js";
import { IpPrefix } from "../../src/util/ip.js";
import { RUN_ID } from "../helpers/names.js";
import { Scope } from "../helpers/scope.js";
import { installCni, NomadAgent, nomadUnavailable } from "./env.js";

const skip = nomadUnavailable();
const scope = new Scope();
let nomad: NomadAgent;
let client: NomadClient;

const layout = {
  clusterCIDRs: [IpPrefix.parse("10.48.0.0/16"), IpPrefix.parse("fd48::/56")],
  nodeMask: { 4: 24, 6: 64 } as const,
};

beforeAll(async () => {
  if (skip) return;
  // No allocation runs here: the CNI dirs only make the agent start as in the other suites.
  const cni = await installCni(scope, { socket: "/nonexistent/cni.sock" });
  nomad = await NomadAgent.start(scope, cni);
  client = new NomadClient({ address: nomad.http });
}, 120_000);

afterAll(() => scope.close(), 120_000);

describe.skipIf(skip !== undefined)(
  `pod CIDR claims in Nomad Variables${skip ? ` (skipped: ${skip})` : ""}`,
  () => {
    const path = `nkit/test-${RUN_ID}-${process.pid}`;

    it("ten nodes claiming at once get ten different CIDRs per family; the variable holds exactly them", async () => {
      const names = Array.from({ length: 10 }, (_, i) => `node-${i}`);
      // One NodeClaims per node, as ten nkitds would have.
      const got = await Promise.all(
        names.map((name, i) =>
          new NodeClaims({ client, path }).claim({ name, addresses: [`192.0.2.${i + 1}`] }, layout),
        ),
      );
      expect(new Set(got.map((r) => r.podCIDRs[0])).size).toBe(10);
      expect(new Set(got.map((r) => r.podCIDRs[1])).size).toBe(10);
      for (const r of got) {
        expect(layout.clusterCIDRs[0]!.contains(IpPrefix.parse(r.podCIDRs[0]!).network)).toBe(true);
        expect(r.podCIDRs[1]).toMatch(/\/64$/);
      }
      const listed = await new NodeClaims({ client, path }).list();
      expect(listed.map((n) => n.name)).toEqual([...names].sort());
      const raw = await nomad.get<{ Items: { table: string } }>(`/v1/var/${path}`);
      expect(Object.keys((JSON.parse(raw.Items.table) as { nodes: object }).nodes).sort()).toEqual(
        [...names].sort(),
      );
    });

    it("a node claiming again keeps its CIDRs; a released claim goes to the next new node; expiry frees stale ones", async () => {
      const claims = new NodeClaims({ client, path });
      const before = (await claims.list()).find((n) => n.name === "node-3")!;
      const again = await claims.claim({ name: "node-3", addresses: ["192.0.2.33"] }, layout);
      expect(again.podCIDRs).toEqual(before.podCIDRs);
      expect(again.addresses).toEqual(["192.0.2.33"]);

      expect(await claims.release("node-3")).toBe(true);
      expect(await claims.release("node-3")).toBe(false);
      const newcomer = await claims.claim({ name: "node-new", addresses: ["192.0.2.50"] }, layout);
      expect(newcomer.podCIDRs).toEqual(before.podCIDRs);

      // Heartbeats younger than the TTL stay; two minutes on, a one-minute TTL frees every claim.
      expect(await claims.expire(600_000, new Date(Date.now() + 300_000))).toEqual([]);
      const names = (await claims.list()).map((n) => n.name);
      expect(names.length).toBe(10);
      expect((await claims.expire(60_000, new Date(Date.now() + 120_000))).sort()).toEqual(names);
      expect(await claims.list()).toEqual([]);
    });
  },
);
