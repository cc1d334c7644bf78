// A pod-style wiring done entirely through the rtnetlink API: veth peer created inside a throwaway
// netns, then addresses, routes and static neighbours set *inside* that netns, read back through
// the API and cross-checked with iproute2.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AlreadyExistsError } from "../../src/errors.js";
import { Rtnl } from "../../src/netlink/index.js";
import { uniqueIfName } from "../helpers/names.js";
import { createNetns, type TestNetns } from "../helpers/netns.js";
import { Scope } from "../helpers/scope.js";
import { ipJson, run } from "../helpers/sys.js";

interface IpAddrInfo {
  family: string;
  local: string;
  prefixlen: number;
}
interface IpLink {
  ifname: string;
  mtu: number;
  address?: string;
  addr_info?: IpAddrInfo[];
}
interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  flags?: string[];
  prefsrc?: string;
  scope?: string;
  metrics?: { mtu?: number }[];
}
interface IpNeigh {
  dst: string;
  dev: string;
  lladdr?: string;
  state?: string[];
}

let scope: Scope;
let ns: TestNetns;
let host: Rtnl;
let pod: Rtnl;
let hostName: string;

const HOST_MAC = "02:00:00:aa:00:01";
const POD_MAC = "02:00:00:aa:00:02";

beforeEach(async () => {
  scope = new Scope();
  ns = await createNetns(scope, "pod");
  host = await Rtnl.host();
  scope.defer(() => host.close());
  pod = await Rtnl.inNetns(ns.path);
  scope.defer(() => pod.close());
  hostName = uniqueIfName("h");
  scope.defer(() => run("ip", ["link", "del", hostName]).catch(() => undefined));
});

afterEach(async () => {
  await scope.close();
});

describe("veth pair with its peer in a netns", () => {
  it("creates the peer directly in the netns with MTU and MACs", async () => {
    const link = await host.createVeth({
      name: hostName,
      peerName: "eth0",
      peerNetnsPath: ns.path,
      mtu: 1450,
      mac: HOST_MAC,
      peerMac: POD_MAC,
    });
    expect(link).toMatchObject({ name: hostName, kind: "veth", mtu: 1450, mac: HOST_MAC, up: false });
    expect(link.peerIndex).toBeGreaterThan(0);
    expect(link.linkNetnsId).toBeGreaterThanOrEqual(0);

    const eth0 = await pod.requireLink("eth0");
    expect(eth0).toMatchObject({ index: link.peerIndex, kind: "veth", mtu: 1450, mac: POD_MAC });
    expect(await host.getLink("eth0").then((l) => l?.mac)).not.toBe(POD_MAC);
    const [ipEth0] = await ipJson<IpLink[]>(["link", "show", "dev", "eth0"], ns.name);
    expect(ipEth0).toMatchObject({ ifname: "eth0", mtu: 1450, address: POD_MAC });

    const podLinks = await pod.listLinks();
    expect(podLinks.map((l) => l.name).sort()).toEqual(["eth0", "lo"]);
  });

  it("configures addresses, routes and neighbours inside the netns (v4 and v6)", async () => {
    await host.createVeth({ name: hostName, peerName: "eth0", peerNetnsPath: ns.path, mac: HOST_MAC });
    await host.setLinkUp(hostName);
    await pod.setLinkUp("eth0");

    await pod.addAddress({ link: "eth0", address: "10.47.0.5/32" });
    await pod.addAddress({ link: "eth0", address: "fd47::5/128" });
    // A fixed link-local gateway reached through a static neighbour entry, as for veth pods.
    await pod.addNeighbour({ link: "eth0", address: "169.254.1.1", lladdr: HOST_MAC });
    await pod.addNeighbour({ link: "eth0", address: "fe80::1", lladdr: HOST_MAC });
    await pod.addRoute({ dst: "default", family: 4, gateway: "169.254.1.1", dev: "eth0", onlink: true });
    await pod.addRoute({ dst: "default", family: 6, gateway: "fe80::1", dev: "eth0" });
    await pod.addRoute({ dst: "10.47.1.0/24", dev: "eth0", src: "10.47.0.5", mtu: 1400 });
    await pod.addRoute({ dst: "fd47:1::/64", dev: "eth0", table: 100, metric: 50 });

    // Our own dumps.
    const eth0 = await pod.requireLink("eth0");
    const addrs = await pod.listAddresses({ link: "eth0" });
    expect(addrs.find((a) => a.address === "10.47.0.5")).toMatchObject({ family: 4, prefixLength: 32 });
    const v6 = addrs.find((a) => a.address === "fd47::5");
    expect(v6).toMatchObject({ family: 6, prefixLength: 128, noDad: true, tentative: false });
    expect(addrs.some((a) => a.family === 6 && a.address.startsWith("fe80:"))).toBe(true);

    const routes = await pod.listRoutes();
    expect(routes.find((r) => r.family === 4 && r.dst === "default")).toMatchObject({
      gateway: "169.254.1.1",
      oif: eth0.index,
      onlink: true,
      table: 254,
    });
    expect(routes.find((r) => r.family === 6 && r.dst === "default")).toMatchObject({
      gateway: "fe80::1",
      oif: eth0.index,
    });
    expect(routes.find((r) => r.dst === "10.47.1.0/24")).toMatchObject({
      src: "10.47.0.5",
      mtu: 1400,
      scope: 253,
    });
    expect(routes.some((r) => r.dst === "fd47:1::/64")).toBe(false); // table 100 is not main
    expect(await pod.listRoutes({ table: 100 })).toEqual([
      expect.objectContaining({ dst: "fd47:1::/64", table: 100, metric: 50, oif: eth0.index }),
    ]);

    const neigh = await pod.listNeighbours({ link: "eth0" });
    expect(neigh).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ family: 4, address: "169.254.1.1", lladdr: HOST_MAC, permanent: true }),
        expect.objectContaining({ family: 6, address: "fe80::1", lladdr: HOST_MAC, permanent: true }),
      ]),
    );

    // iproute2's view of the same namespace.
    const [ipAddr] = await ipJson<IpLink[]>(["addr", "show", "dev", "eth0"], ns.name);
    const locals = (ipAddr?.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`);
    expect(locals).toEqual(expect.arrayContaining(["10.47.0.5/32", "fd47::5/128"]));
    const r4 = await ipJson<IpRoute[]>(["-4", "route", "show"], ns.name);
    expect(r4.find((r) => r.dst === "default")).toMatchObject({
      gateway: "169.254.1.1",
      dev: "eth0",
      flags: ["onlink"],
    });
    expect(r4.find((r) => r.dst === "10.47.1.0/24")).toMatchObject({ prefsrc: "10.47.0.5", scope: "link" });
    const r6 = await ipJson<IpRoute[]>(["-6", "route", "show"], ns.name);
    expect(r6.find((r) => r.dst === "default")).toMatchObject({ gateway: "fe80::1", dev: "eth0" });
    const r100 = await ipJson<IpRoute[]>(["-6", "route", "show", "table", "100"], ns.name);
    expect(r100.map((r) => r.dst)).toEqual(["fd47:1::/64"]);
    const ipNeigh = await ipJson<IpNeigh[]>(["neigh", "show", "dev", "eth0"], ns.name);
    for (const dst of ["169.254.1.1", "fe80::1"]) {
      expect(ipNeigh.find((n) => n.dst === dst)).toMatchObject({ lladdr: HOST_MAC, state: ["PERMANENT"] });
    }
    // Nothing leaked into the host's tables.
    const hostRoutes = await host.listRoutes();
    expect(hostRoutes.some((r) => r.dst === "10.47.1.0/24")).toBe(false);
  });

  it("has replace semantics for re-runs and idempotent deletes", async () => {
    await host.createVeth({ name: hostName, peerName: "eth0", peerNetnsPath: ns.path });
    await pod.setLinkUp("eth0");
    const addr = { link: "eth0", address: "10.47.0.9/32" } as const;
    await pod.addAddress(addr);
    await expect(pod.addAddress(addr)).rejects.toBeInstanceOf(AlreadyExistsError);
    await pod.replaceAddress(addr);

    const route = { dst: "10.47.2.0/24", dev: "eth0" } as const;
    await pod.addRoute(route);
    await expect(pod.addRoute(route)).rejects.toThrow(/EEXIST/);
    await pod.replaceRoute({ ...route, mtu: 1300 });
    expect((await pod.listRoutes({ family: 4 })).find((r) => r.dst === "10.47.2.0/24")?.mtu).toBe(1300);

    await pod.addNeighbour({ link: "eth0", address: "10.47.0.1", lladdr: HOST_MAC });
    await pod.replaceNeighbour({ link: "eth0", address: "10.47.0.1", lladdr: POD_MAC });
    const n = (await pod.listNeighbours({ family: 4 })).find((x) => x.address === "10.47.0.1");
    expect(n?.lladdr).toBe(POD_MAC);

    expect(await pod.deleteNeighbour({ link: "eth0", address: "10.47.0.1" })).toBe(true);
    expect(await pod.deleteNeighbour({ link: "eth0", address: "10.47.0.1" })).toBe(false);
    expect(await pod.deleteRoute(route)).toBe(true);
    expect(await pod.deleteRoute(route)).toBe(false);
    expect(await pod.deleteAddress(addr)).toBe(true);
    expect(await pod.deleteAddress(addr)).toBe(false);
    expect(await pod.listAddresses({ link: "eth0", family: 4 })).toEqual([]);

    expect(await host.deleteLink(hostName)).toBe(true);
    expect(await host.deleteLink(hostName)).toBe(false);
    expect(await pod.getLink("eth0")).toBeUndefined(); // the peer went with it
  });

  it("routes host → pod through the host side of the pair", async () => {
    const link = await host.createVeth({ name: hostName, peerName: "eth0", peerNetnsPath: ns.path });
    await host.setLinkUp(hostName);
    await host.addRoute({ dst: "10.47.0.77/32", dev: hostName });
    await host.addRoute({ dst: "fd47::77/128", dev: link.index });
    const mine = (await host.listRoutes({ dev: hostName })).map((r) => r.dst).sort();
    expect(mine).toEqual(["10.47.0.77/32", "fd47::77/128"]);
  });
});
