// What a wiring configures on both ends, read back with iproute2: MTU, BIG TCP GSO/GRO sizes,
// exactly the pod's /32 and /128, its routes via the link-local gateways, permanent neighbours on
// both sides, the host routes and the per-device sysctls the datapath relies on.
import { readdirSync, readFileSync } from "node:fs";
import { cpus } from "node:os";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { BIG_TCP_SIZE, GATEWAY_V4, GATEWAY_V6 } from "../../src/datapath/devices.js";
import { scopedIfName } from "../helpers/netns.js";
import { Scope } from "../helpers/scope.js";
import { inNetns, ipJson, run } from "../helpers/sys.js";
import { addrKey, createHarness, createPod, ping } from "./datapath-fixture.js";

let scope: Scope;
beforeEach(() => {
  scope = new Scope();
});
afterEach(() => scope.close());

interface IpLinkDetail {
  ifname: string;
  mtu: number;
  address: string;
  operstate: string;
  flags: string[];
  gso_max_size: number;
  gro_max_size: number;
  gso_ipv4_max_size?: number;
  gro_ipv4_max_size?: number;
}
interface IpAddr {
  addr_info: { family: string; local: string; prefixlen: number; scope: string }[];
}
interface IpRoute {
  dst: string;
  gateway?: string;
  dev: string;
  scope?: string;
  flags: string[];
}
interface IpNeigh {
  dst: string;
  lladdr: string;
  state: string[];
}

const linkDetail = async (dev: string, ns?: string): Promise<IpLinkDetail> =>
  (await ipJson<IpLinkDetail[]>(["-d", "link", "show", "dev", dev], ns))[0]!;

const sizes = (l: IpLinkDetail) => [l.gso_max_size, l.gro_max_size, l.gso_ipv4_max_size, l.gro_ipv4_max_size];

describe("endpoint configuration", () => {
  it("applies MTU and BIG TCP sizes to both ends and exactly the expected addresses, routes and neighbours", async () => {
    const h = await createHarness(scope, { mtu: 1400 });
    const pod = await createPod(scope, "cfg");
    const ep = await h.pods.admit({ id: h.newId("cfg"), netnsPath: pod.path });
    const [v4, v6] = [ep.addresses.ipv4!, ep.addresses.ipv6!];

    const host = await linkDetail(ep.hostIfName);
    const podLink = await linkDetail("eth0", pod.name);
    for (const l of [host, podLink]) {
      expect(l.mtu, `${l.ifname} mtu`).toBe(1400);
      expect(sizes(l), `${l.ifname} gso/gro sizes`).toEqual([
        BIG_TCP_SIZE,
        BIG_TCP_SIZE,
        BIG_TCP_SIZE,
        BIG_TCP_SIZE,
      ]);
      expect(l.flags).toContain("UP");
    }
    expect(BIG_TCP_SIZE).toBe(196608);

    // Pod: lo up; on eth0 the /32 and /128 and nothing else but the kernel's own link-local.
    expect((await linkDetail("lo", pod.name)).flags).toContain("UP");
    const addrs = (await ipJson<IpAddr[]>(["addr", "show", "dev", "eth0"], pod.name)).flatMap(
      (a) => a.addr_info,
    );
    expect(
      addrs
        .filter((a) => a.scope !== "link")
        .map((a) => `${a.local}/${a.prefixlen}`)
        .sort(),
    ).toEqual([`${v4}/32`, `${v6}/128`].sort());
    for (const a of addrs.filter((x) => x.scope === "link")) expect(a.local).toMatch(/^fe80:/);

    // Pod routes (main table): v4 default via the link-local gateway, reachable on eth0; v6 default via fe80::1.
    const r4 = await ipJson<IpRoute[]>(["-4", "route", "show"], pod.name);
    expect(r4.map((r) => [r.dst, r.gateway ?? null, r.dev, r.scope ?? null]).sort()).toEqual(
      [
        ["default", GATEWAY_V4, "eth0", null],
        [GATEWAY_V4, null, "eth0", "link"],
      ].sort(),
    );
    const r6 = await ipJson<IpRoute[]>(["-6", "route", "show"], pod.name);
    expect(r6.filter((r) => r.dst === "default").map((r) => [r.gateway, r.dev])).toEqual([
      [GATEWAY_V6, "eth0"],
    ]);
    // Every other v6 route is the kernel's own (the /128 itself, fe80::/64), all on eth0.
    for (const r of r6.filter((x) => x.dst !== "default")) {
      expect(r.dev).toBe("eth0");
      expect(r.dst === "fe80::/64" || addrKey(r.dst) === addrKey(v6), `pod route ${r.dst}`).toBe(true);
    }

    // Permanent neighbours: gateways -> host device MAC in the pod, pod addresses -> pod MAC on the host.
    const podNeigh = await ipJson<IpNeigh[]>(["neigh", "show", "dev", "eth0", "nud", "permanent"], pod.name);
    expect(podNeigh.map((n) => [n.dst, n.lladdr]).sort()).toEqual(
      [
        [GATEWAY_V4, host.address],
        [GATEWAY_V6, host.address],
      ].sort(),
    );
    const hostNeigh = await ipJson<IpNeigh[]>(["neigh", "show", "dev", ep.hostIfName, "nud", "permanent"]);
    expect(hostNeigh.map((n) => [n.dst, n.lladdr]).sort()).toEqual(
      [
        [v4, podLink.address],
        [v6, podLink.address],
      ].sort(),
    );

    // Host: one route per family to the pod through its device, and the per-device sysctls.
    const h4 = await ipJson<IpRoute[]>(["-4", "route", "show", "dev", ep.hostIfName]);
    expect(h4.map((r) => [r.dst, r.scope])).toEqual([[v4, "link"]]);
    const h6 = await ipJson<IpRoute[]>(["-6", "route", "show", "dev", ep.hostIfName]);
    expect(h6.filter((r) => !r.dst.startsWith("fe80")).map((r) => r.dst)).toEqual([v6]);
    const sysctl = (k: string) =>
      readFileSync(`/proc/sys/net/ipv4/conf/${ep.hostIfName}/${k}`, "utf8").trim();
    expect([sysctl("forwarding"), sysctl("rp_filter")]).toEqual(["1", "0"]);
    // One queue pair per end; the host end steers what the pod sends to every online CPU by flow.
    expect(readdirSync(`/sys/class/net/${ep.hostIfName}/queues`).sort()).toEqual(["rx-0", "tx-0"]);
    const online = cpus().length;
    const rps = Number.parseInt(
      readFileSync(`/sys/class/net/${ep.hostIfName}/queues/rx-0/rps_cpus`, "utf8").replaceAll(",", ""),
      16,
    );
    expect(rps).toBe(2 ** online - 1);

    // And traffic flows with those settings: 1372 bytes of ICMP payload fill the 1400 MTU exactly
    // (DF set), one more byte does not fit.
    const pod2 = await createPod(scope, "cfg2");
    await h.pods.admit({ id: h.newId("cfg2"), netnsPath: pod2.path });
    expect(await ping(pod2, v4)).toBe(true);
    const dfPing = (size: number) =>
      inNetns(pod2.path, "ping", ["-c", "1", "-W", "2", "-q", "-M", "do", "-s", String(size), v4]);
    await dfPing(1400 - 28);
    await expect(dfPing(1400 - 27)).rejects.toThrow();
  });

  it("BIG TCP follows the uplinks: raised on uplinks that can carry it, off for pods when one cannot", async () => {
    const [capable, other, portless] = ["a", "b", "c"].map((s) => scopedIfName(scope, s)) as [
      string,
      string,
      string,
    ];
    for (const name of [capable, other])
      await run("ip", ["link", "add", name, "type", "veth", "peer", "name", `${name}p`]);
    // A bridge without ports: tso_max_size 65536, like a NIC whose driver has no BIG TCP.
    await run("ip", ["link", "add", portless, "type", "bridge"]);
    expect(sizes(await linkDetail(capable))).toEqual([65536, 65536, 65536, 65536]);

    const big = await createHarness(scope, { uplinks: [capable] });
    expect(big.mgr.bigTcp).toBe(true);
    expect(sizes(await linkDetail(capable))).toEqual([
      BIG_TCP_SIZE,
      BIG_TCP_SIZE,
      BIG_TCP_SIZE,
      BIG_TCP_SIZE,
    ]);
    const pod1 = await createPod(scope, "bigup");
    await big.pods.admit({ id: big.newId("bigup"), netnsPath: pod1.path });
    expect(sizes(await linkDetail("eth0", pod1.name))[0]).toBe(BIG_TCP_SIZE);

    const small = await createHarness(scope, { uplinks: [other, portless] });
    expect(small.mgr.bigTcp).toBe(false);
    // Nothing raised where the pods do not send BIG TCP.
    expect(sizes(await linkDetail(other))).toEqual([65536, 65536, 65536, 65536]);
    const pod2 = await createPod(scope, "smallup");
    const ep = await small.pods.admit({ id: small.newId("smallup"), netnsPath: pod2.path });
    for (const l of [await linkDetail(ep.hostIfName), await linkDetail("eth0", pod2.name)])
      expect(sizes(l)).toEqual([65536, 65536, 65536, 65536]);
  });

  it("keeps the kernel defaults with bigTcp: false and uses MTU 1500 without uplinks", async () => {
    const h = await createHarness(scope, { bigTcp: false });
    const pod = await createPod(scope, "nobig");
    const ep = await h.pods.admit({ id: h.newId("nobig"), netnsPath: pod.path });
    for (const l of [await linkDetail(ep.hostIfName), await linkDetail("eth0", pod.name)]) {
      expect(l.mtu).toBe(1500);
      expect(sizes(l)).toEqual([65536, 65536, 65536, 65536]);
    }
  });
});
