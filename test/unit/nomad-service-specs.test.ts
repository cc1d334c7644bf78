// Nomad's native services as nkit services: names, stable VIPs, tags, health.
import { describe, expect, it } from "vitest";
import type { ServiceRegistration } from "../../src/nomad/client.js";
import { nomadServiceName, nomadServiceSpecs, stableVips } from "../../src/nomad/service-specs.js";
import { IpPrefix } from "../../src/util/ip.js";

const CIDRS = [IpPrefix.parse("10.96.0.0/16"), IpPrefix.parse("fd96::/112")];

let seq = 0;
function reg(
  name: string,
  address: string,
  port: number,
  extra: Partial<ServiceRegistration> = {},
): ServiceRegistration {
  seq++;
  return {
    ID: `_nomad-task-${seq}-${name}`,
    ServiceName: name,
    Namespace: "default",
    AllocID: `alloc-${seq}`,
    Address: address,
    Port: port,
    Tags: [],
    ...extra,
  };
}

describe("nomadServiceSpecs", () => {
  it("makes one service per name and family with the registrations as backends", () => {
    const regs = [reg("web", "10.47.0.2", 8080), reg("web", "10.47.0.3", 8080), reg("db", "fd47::5", 5432)];
    const { specs, problems } = nomadServiceSpecs(regs, new Set(), CIDRS);
    expect(problems).toEqual([]);
    expect(specs.map((s) => [s.name, s.family, s.ports, s.backends])).toEqual([
      [
        "nomad.default.db.v6",
        6,
        [{ port: 5432, protocol: "tcp", targetPort: 5432 }],
        [{ address: "fd47::5", port: 5432 }],
      ],
      [
        "nomad.default.web",
        4,
        [{ port: 8080, protocol: "tcp", targetPort: 8080 }],
        [
          { address: "10.47.0.2", port: 8080 },
          { address: "10.47.0.3", port: 8080 },
        ],
      ],
    ]);
    for (const s of specs)
      expect(
        CIDRS.some((c) => c.contains(IpPrefix.parse(`${s.vip}/${s.family === 4 ? 32 : 128}`).network)),
      ).toBe(true);
  });

  it("gives the same VIPs whatever the order the registrations came in, and the same after a restart", () => {
    const regs = ["a", "b", "c", "d", "e", "f"].map((n, i) => reg(n, `10.47.0.${i + 2}`, 80));
    const one = nomadServiceSpecs(regs, new Set(), CIDRS).specs.map((s) => [s.name, s.vip]);
    const two = nomadServiceSpecs([...regs].reverse(), new Set(), CIDRS).specs.map((s) => [s.name, s.vip]);
    expect(two).toEqual(one);
    expect(new Set(one.map(([, vip]) => vip)).size).toBe(6);
    // A fixed point: a change of the hash or of the prefix arithmetic changes every host's VIPs.
    expect(stableVips(["default/web"], IpPrefix.parse("10.96.0.0/16")).get("default/web")?.toString()).toBe(
      stableVips(["default/web", "default/other"], IpPrefix.parse("10.96.0.0/16"))
        .get("default/web")
        ?.toString(),
    );
  });

  it("settles hash collisions by name, never hands out the network or broadcast address, and says when the prefix is full", () => {
    const tiny = IpPrefix.parse("10.96.0.0/30"); // usable: .1 and .2
    const vips = stableVips(["x", "y", "z"], tiny);
    expect([...vips.keys()].length).toBe(2);
    expect(vips.has("x") && vips.has("y")).toBe(true);
    expect([...vips.values()].map((v) => v.toString()).sort()).toEqual(["10.96.0.1", "10.96.0.2"]);
    const regs = ["x", "y", "z"].map((n, i) => reg(n, `10.47.0.${i + 2}`, 80));
    const r = nomadServiceSpecs(regs, new Set(), [tiny]);
    expect(r.specs.map((s) => s.name)).toEqual(["nomad.default.x", "nomad.default.y"]);
    expect(r.problems).toEqual([
      { service: "default/z", problem: "no free address left in the IPv4 serviceCIDR" },
    ]);
  });

  it("takes the VIP, port and external flag from tags; a bad tag is a problem, not a crash", () => {
    const regs = [
      reg("api", "10.47.0.2", 8080, { Tags: ["nkit.vip=10.96.5.5", "nkit.port=80", "nkit.external"] }),
      reg("bad", "10.47.0.3", 8080, { Tags: ["nkit.vip=nope"] }),
      reg("badport", "10.47.0.4", 8080, { Tags: ["nkit.port=70000"] }),
    ];
    const { specs, problems } = nomadServiceSpecs(regs, new Set(), CIDRS);
    expect(specs).toEqual([
      expect.objectContaining({
        name: "nomad.default.api",
        vip: "10.96.5.5",
        ports: [{ port: 80, protocol: "tcp", targetPort: 80 }],
        backends: [{ address: "10.47.0.2", port: 8080 }],
        external: true,
      }),
    ]);
    expect(problems.map((p) => p.service)).toEqual(["default/bad", "default/badport"]);
  });

  it("leaves out backends a failing check took out, keeping the VIP with none when all are out", () => {
    const a = reg("web", "10.47.0.2", 8080);
    const b = reg("web", "10.47.0.3", 8080);
    const all = nomadServiceSpecs([a, b], new Set(), CIDRS).specs[0]!;
    const one = nomadServiceSpecs([a, b], new Set([a.ID]), CIDRS).specs[0]!;
    const none = nomadServiceSpecs([a, b], new Set([a.ID, b.ID]), CIDRS).specs[0]!;
    expect(one.backends).toEqual([{ address: "10.47.0.3", port: 8080 }]);
    expect(none.backends).toEqual([]);
    expect(new Set([all.vip, one.vip, none.vip]).size).toBe(1);
  });

  it("needs a serviceCIDR of the backends' family and a name nkit accepts", () => {
    const r = nomadServiceSpecs([reg("v6only", "fd47::9", 80)], new Set(), [IpPrefix.parse("10.96.0.0/16")]);
    expect(r.specs).toEqual([]);
    expect(r.problems).toEqual([
      { service: "default/v6only", problem: "IPv6 backends but no IPv6 serviceCIDR for a VIP" },
    ]);
    expect(nomadServiceName("default", "web", 4)).toBe("nomad.default.web");
    expect(nomadServiceName("default", "x".repeat(60), 4)).toBeUndefined();
  });
});
