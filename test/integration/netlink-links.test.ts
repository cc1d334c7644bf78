// Link updates: moves between namespaces, renames, MTU and the GSO/GRO sizes BIG TCP depends on.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Rtnl } from "../../src/netlink/index.js";
import { uniqueIfName } from "../helpers/names.js";
import { createNetns, hostRtnl, scopedIfName } from "../helpers/netns.js";
import { Scope } from "../helpers/scope.js";
import { ipJson } from "../helpers/sys.js";

interface IpDetailedLink {
  ifname: string;
  mtu: number;
  gso_max_size: number;
  gro_max_size: number;
  gso_ipv4_max_size: number;
  gro_ipv4_max_size: number;
  tso_max_size: number;
}

let scope: Scope;
let host: Rtnl;

beforeEach(async () => {
  scope = new Scope();
  host = await hostRtnl(scope);
});

afterEach(async () => {
  await scope.close();
});

function hostPair(): { a: string; b: string } {
  // b is a's peer: deleting a deletes it
  return { a: scopedIfName(scope, "a"), b: uniqueIfName("b") };
}

describe("moving links between namespaces", () => {
  it("moves host → ns A → ns B, renaming on the way, and finds the link by name there", async () => {
    const nsA = await createNetns(scope, "a");
    const nsB = await createNetns(scope, "b");
    const { a, b } = hostPair();
    const created = await host.createVeth({ name: a, peerName: b });
    expect(created.linkNetnsId).toBeUndefined(); // both ends here

    await host.moveLink(b, nsA.path);
    expect(await host.getLink(b)).toBeUndefined();
    const inA = await Rtnl.inNetns(nsA.path);
    scope.defer(() => inA.close());
    const moved = await inA.requireLink(b);
    expect(moved.kind).toBe("veth");
    expect((await host.requireLink(a)).linkNetnsId).toBeGreaterThanOrEqual(0);

    await inA.moveLink(b, nsB.path, "eth1");
    expect(await inA.getLink(b)).toBeUndefined();
    const inB = await Rtnl.inNetns(nsB.path);
    scope.defer(() => inB.close());
    const there = await inB.requireLink("eth1");
    expect(there.peerIndex).toBe(created.index);
    const ipB = await ipJson<{ ifname: string }[]>(["link", "show"], nsB.name);
    expect(ipB.map((l) => l.ifname).sort()).toEqual(["eth1", "lo"]);

    // Renaming inside the namespace, by index.
    await inB.renameLink(there.index, "eth0");
    expect((await inB.requireLink(there.index)).name).toBe("eth0");
  });
});

describe("MTU and offload sizes", () => {
  it("applies MTU, up and txqlen in one request", async () => {
    const { a, b } = hostPair();
    await host.createVeth({ name: a, peerName: b });
    await host.updateLink(a, { mtu: 9000, up: true, txqlen: 500 });
    const l = await host.requireLink(a);
    expect(l).toMatchObject({ mtu: 9000, up: true, txqlen: 500 });
    await host.setLinkUp(a, false);
    expect((await host.requireLink(a)).up).toBe(false);
    await host.setMtu(a, 1280);
    const [ip] = await ipJson<IpDetailedLink[]>(["link", "show", "dev", a]);
    expect(ip?.mtu).toBe(1280);
  });

  it("sets GSO/GRO max sizes (v6 and v4 variants) to 192 KiB and reads them back", async () => {
    const { a, b } = hostPair();
    await host.createVeth({ name: a, peerName: b });
    const before = await host.bigTcpLimits(a);
    expect(before.tsoMaxSize).toBeGreaterThan(65536); // veth can do BIG TCP
    const big = 196608;
    await host.setOffloadSizes(a, {
      gsoMaxSize: big,
      groMaxSize: big,
      gsoIpv4MaxSize: big,
      groIpv4MaxSize: big,
    });
    const after = await host.bigTcpLimits(a);
    expect(after).toEqual({
      tsoMaxSize: before.tsoMaxSize,
      tsoMaxSegs: before.tsoMaxSegs,
      gsoMaxSize: big,
      groMaxSize: big,
      gsoIpv4MaxSize: big,
      groIpv4MaxSize: big,
    });
    const [ip] = await ipJson<IpDetailedLink[]>(["-d", "link", "show", "dev", a]);
    expect(ip).toMatchObject({
      gso_max_size: big,
      gro_max_size: big,
      gso_ipv4_max_size: big,
      gro_ipv4_max_size: big,
      tso_max_size: after.tsoMaxSize,
    });
  });
});
