// Pod CIDR claims out of the cluster CIDRs: lowest free subnet per family, kept on renewal, a clear
// error when full or when the node mask does not fit.
import { describe, expect, it } from "vitest";
import { withClaim } from "../../src/nomad/node-claims.js";
import { IpPrefix } from "../../src/util/ip.js";

const layout = {
  clusterCIDRs: [IpPrefix.parse("10.48.0.0/22"), IpPrefix.parse("fd48::/62")],
  nodeMask: { 4: 24, 6: 64 } as const,
};
const now = new Date("2026-12-07T12:00:00Z");

describe("withClaim", () => {
  it("gives a new node the lowest free subnet of each family and a renewing node its own", () => {
    let t: Parameters<typeof withClaim>[0] = { nodes: {} };
    t = withClaim(t, { name: "a", addresses: ["192.0.2.1"] }, layout, now);
    t = withClaim(t, { name: "b", addresses: ["192.0.2.2"] }, layout, now);
    expect(Object.values(t.nodes).map((n) => n.podCIDRs)).toEqual([
      ["10.48.0.0/24", "fd48::/64"],
      ["10.48.1.0/24", "fd48:0:0:1::/64"],
    ]);
    const later = new Date("2026-12-07T13:00:00Z");
    const renewed = withClaim(t, { name: "a", addresses: ["192.0.2.9"] }, layout, later);
    expect(renewed.nodes.a).toEqual({
      name: "a",
      addresses: ["192.0.2.9"],
      podCIDRs: ["10.48.0.0/24", "fd48::/64"],
      heartbeatAt: later.toISOString(),
    });
    // A released subnet is the next one handed out.
    const { a: _a, ...rest } = renewed.nodes;
    const c = withClaim({ nodes: rest }, { name: "c", addresses: ["192.0.2.3"] }, layout, now);
    expect(c.nodes.c?.podCIDRs).toEqual(["10.48.0.0/24", "fd48::/64"]);
  });

  it("refuses when the cluster CIDR is full, naming the way out, and a node mask that does not fit", () => {
    let t: Parameters<typeof withClaim>[0] = { nodes: {} };
    for (const n of ["a", "b", "c", "d"])
      t = withClaim(t, { name: n, addresses: ["192.0.2.1"] }, layout, now);
    expect(() => withClaim(t, { name: "e", addresses: ["192.0.2.5"] }, layout, now)).toThrow(
      /10\.48\.0\.0\/22 has no free \/24 left for node e: forget departed nodes/,
    );
    expect(() =>
      withClaim(
        { nodes: {} },
        { name: "a", addresses: ["x"] },
        { ...layout, nodeMask: { 4: 20, 6: 64 } },
        now,
      ),
    ).toThrow(/\/20 does not fit in the cluster CIDR 10\.48\.0\.0\/22/);
  });

  it("gives a node its preferred (saved) subnets when free, and the lowest free ones when taken", () => {
    let t: Parameters<typeof withClaim>[0] = { nodes: {} };
    t = withClaim(t, { name: "a", addresses: ["192.0.2.1"] }, layout, now);
    const prefer = ["10.48.2.0/24", "fd48:0:0:2::/64"];
    const b = withClaim(t, { name: "b", addresses: ["192.0.2.2"], prefer }, layout, now);
    expect(b.nodes.b?.podCIDRs).toEqual(prefer);
    // Taken by "a" (or outside the cluster CIDR): the lowest free one instead.
    const c = withClaim(
      b,
      { name: "c", addresses: ["192.0.2.3"], prefer: ["10.48.0.0/24", "10.99.0.0/24"] },
      layout,
      now,
    );
    expect(c.nodes.c?.podCIDRs).toEqual(["10.48.1.0/24", "fd48:0:0:1::/64"]);
  });
});
