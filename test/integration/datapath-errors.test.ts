// Every way a wiring can fail leaves nothing behind: no host device, route, neighbour, map entry,
// pin, record or IPAM allocation. Checked independently of the manager: iproute2 for the kernel's
// view, fresh fds on the pinned maps, the state and pin dirs on disk. Plus the benign repeats:
// wire twice, unwire twice, and the refused one (same id, another netns).
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { EndpointManager } from "../../src/datapath/endpoint-manager.js";
import { hostIfName } from "../../src/datapath/naming.js";
import {
  AlreadyExistsError,
  InvalidArgumentError,
  IpamExhaustedError,
  NetnsError,
  NotSupportedError,
} from "../../src/errors.js";
import { uniqueBpffsDir, uniqueNetnsName } from "../helpers/names.js";
import { Scope } from "../helpers/scope.js";
import { inNetns, ipJson, run } from "../helpers/sys.js";
import {
  createHarness,
  createPod,
  datapathState,
  expectNothingLeft,
  type Harness,
  hostLinkNames,
  ping,
  readDatapathMaps,
} from "./datapath-fixture.js";

let scope: Scope;
beforeEach(() => {
  scope = new Scope();
});
afterEach(() => scope.close());

async function failure(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    if (e instanceof Error) return e;
    throw new Error(`rejected with a non-Error: ${String(e)}`);
  }
  throw new Error("expected the operation to fail, but it succeeded");
}

/** An address inside the harness's pod CIDR that IPAM will not hand out first. */
function spareV4(h: Harness, last: number): string {
  return h.cidr4.replace(/\.0\/\d+$/, `.${last}`);
}

interface PodLink {
  ifname: string;
  ifindex: number;
  link_type: string;
}
interface PodAddr {
  ifname: string;
  addr_info: { local: string; scope: string }[];
}

describe("failed wirings leave nothing behind", () => {
  it("refuses a missing netns path with a NetnsError naming it", async () => {
    const h = await createHarness(scope);
    const before = await datapathState(h);
    const id = h.newId("nons");
    const path = `/run/netns/${uniqueNetnsName("missing")}`;
    const err = await failure(h.pods.admit({ id, netnsPath: path }));
    expect(err).toBeInstanceOf(NetnsError);
    expect((err as NetnsError).path).toBe(path);
    expect(err.message).toContain(path);
    expect(err.message).toMatch(/does not exist/);
    await expectNothingLeft(h, id, [], before);

    // A path that exists but is no netns.
    const dir = mkdtempSync(join(tmpdir(), "nkit-notns-"));
    scope.defer(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, "not-a-netns");
    writeFileSync(file, "");
    const err2 = await failure(h.pods.admit({ id, netnsPath: file }));
    expect(err2).toBeInstanceOf(NetnsError);
    expect(err2.message).toContain(file);
    expect(err2.message).toMatch(/not a network namespace/);
    await expectNothingLeft(h, id, [], before);

    // The host's own namespace (a CNI caller passing it by mistake) is never a pod's.
    const err3 = await failure(h.pods.admit({ id, netnsPath: "/proc/self/ns/net" }));
    expect(err3).toBeInstanceOf(InvalidArgumentError);
    expect(err3.message).toMatch(/\/proc\/self\/ns\/net is the host's own network namespace/);
    await expectNothingLeft(h, id, [], before);
  });

  it("refuses a pod interface name that is taken in the pod netns, leaving that interface alone", async () => {
    const h = await createHarness(scope);
    const pod = await createPod(scope, "taken");
    await run("ip", ["-n", pod.name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"]);
    const podLinksBefore = await ipJson<PodLink[]>(["link", "show"], pod.name);
    const before = await datapathState(h);
    const id = h.newId("taken");

    const err = await failure(h.pods.admit({ id, netnsPath: pod.path }));
    expect(err).toBeInstanceOf(AlreadyExistsError);
    expect(err.message).toContain("eth0");
    expect(err.message).toContain(pod.path);
    expect(err.message).toContain(hostIfName(id));

    // The addresses IPAM handed out for the attempt were given back.
    await expectNothingLeft(h, id, [], before);
    // The pod's own eth0 is untouched: same devices, no addresses, no routes.
    const podLinks = await ipJson<PodLink[]>(["link", "show"], pod.name);
    expect(podLinks.map((l) => [l.ifname, l.ifindex, l.link_type])).toEqual(
      podLinksBefore.map((l) => [l.ifname, l.ifindex, l.link_type]),
    );
    const addrs = await ipJson<PodAddr[]>(["addr", "show", "dev", "eth0"], pod.name);
    expect(addrs.flatMap((a) => a.addr_info)).toEqual([]);
    expect(await ipJson<unknown[]>(["-4", "route", "show"], pod.name)).toEqual([]);

    // A free interface name works in the same netns.
    const ok = await h.pods.admit({ id, netnsPath: pod.path, ifName: "eth9" });
    expect(ok.podIfName).toBe("eth9");
    expect(await h.pods.release(id)).toBe(true);
    await expectNothingLeft(h, id, [ok.addresses.ipv4!, ok.addresses.ipv6!], before);
  });

  it("reports an exhausted IPv4 CIDR with the CIDR and its use, and keeps existing pods working", async () => {
    const h = await createHarness(scope, { v4Prefix: 30 });
    const [p1, p2, p3] = await Promise.all([
      createPod(scope, "x1"),
      createPod(scope, "x2"),
      createPod(scope, "x3"),
    ]);
    const a = await h.pods.admit({ id: h.newId("x1"), netnsPath: p1.path });
    const b = await h.pods.admit({ id: h.newId("x2"), netnsPath: p2.path });
    const before = await datapathState(h);
    expect(before.ipamUsed).toEqual([2, 2]);

    const id = h.newId("x3");
    const err = await failure(h.pods.admit({ id, netnsPath: p3.path }));
    expect(err).toBeInstanceOf(IpamExhaustedError);
    expect((err as IpamExhaustedError).cidr).toBe(h.cidr4);
    expect((err as IpamExhaustedError).inUse).toBe(2);
    expect(err.message).toContain(h.cidr4);
    expect(err.message).toContain("2 in use");
    await expectNothingLeft(h, id, [], before);
    expect(await ipJson<PodLink[]>(["link", "show"], p3.name)).toHaveLength(1); // lo only

    expect(await ping(p1, b.addresses.ipv4!)).toBe(true);
    expect(await ping(p2, a.addresses.ipv6!)).toBe(true);
    // Freeing one makes room again.
    await h.pods.release(a.id);
    const c = await h.pods.admit({ id, netnsPath: p3.path });
    expect(c.addresses.ipv4).toBeDefined();
  });

  it("rejects invalid explicit addresses before creating anything", async () => {
    const h = await createHarness(scope);
    const pod = await createPod(scope, "inv");
    const before = await datapathState(h);
    const id = h.newId("inv");
    const bad: { ipv4?: string; ipv6?: string }[] = [
      { ipv4: "10.1.2.300" },
      { ipv4: "10.1.2.3/32" },
      { ipv4: "fd00::5" },
      { ipv6: "10.1.2.3" },
      { ipv6: "fd00::zz" },
      { ipv4: spareV4(h, 7), ipv6: "not-an-address" },
    ];
    for (const addresses of bad) {
      const err = await failure(h.mgr.wire({ id, netnsPath: pod.path, addresses }));
      expect(err).toBeInstanceOf(InvalidArgumentError);
      expect(err.message).toContain(addresses.ipv6 ?? addresses.ipv4);
      expect(err.message).toContain(id);
      await expectNothingLeft(h, id, [], before);
    }
    // Invalid interface names, too.
    for (const ifName of ["", "way-too-long-name0", "eth 0", "a/b"]) {
      const err = await failure(h.pods.admit({ id, netnsPath: pod.path, ifName }));
      expect(err).toBeInstanceOf(InvalidArgumentError);
      await expectNothingLeft(h, id, [], before);
    }
    expect(await ipJson<PodLink[]>(["link", "show"], pod.name)).toHaveLength(1);
  });

  it("rolls back a wiring whose address is already an endpoint's, without touching that endpoint", async () => {
    const h = await createHarness(scope);
    const [pa, pb] = await Promise.all([createPod(scope, "own"), createPod(scope, "dup")]);
    const a = await h.pods.admit({ id: h.newId("own"), netnsPath: pa.path });
    const ownerEntry = readDatapathMaps(h.bpffsDir).endpoints;
    const before = await datapathState(h);
    const id = h.newId("dup");

    // Only the IPv6 address collides: the IPv4 entry written first must be undone too.
    const err = await failure(
      h.mgr.wire({ id, netnsPath: pb.path, addresses: { ipv4: spareV4(h, 200), ipv6: a.addresses.ipv6! } }),
    );
    expect(err).toBeInstanceOf(AlreadyExistsError);
    expect(err.message).toContain(id);
    expect(err.message).toContain(a.addresses.ipv6!);
    expect(err.message).toContain(`endpoint ${a.id}`);
    await expectNothingLeft(h, id, [spareV4(h, 200)], before);
    expect(readDatapathMaps(h.bpffsDir).endpoints).toEqual(ownerEntry);
    expect(await ipJson<PodLink[]>(["link", "show"], pb.name)).toHaveLength(1);

    // The owner still works, and the address is free for it alone.
    const pc = await createPod(scope, "peer");
    const c = await h.pods.admit({ id: h.newId("peer"), netnsPath: pc.path });
    expect(await ping(pc, a.addresses.ipv6!)).toBe(true);
    expect(await ping(pa, c.addresses.ipv4!)).toBe(true);
  });

  it("rolls back a wiring that fails at the last step (host route), including links, pins and the pod side", async () => {
    const h = await createHarness(scope);
    const pod = await createPod(scope, "late");
    const addr = spareV4(h, 201);
    // Someone else's route to exactly that address: the manager's route add gets EEXIST.
    await run("ip", ["route", "add", `${addr}/32`, "dev", "lo"]);
    scope.defer(() => run("ip", ["route", "del", `${addr}/32`, "dev", "lo"]));
    const before = await datapathState(h);
    const id = h.newId("late");

    const err = await failure(h.mgr.wire({ id, netnsPath: pod.path, addresses: { ipv4: addr } }));
    expect(err).toBeInstanceOf(AlreadyExistsError);
    expect(err.message).toContain(id);
    // Nothing left except the foreign route, which is untouched.
    await expectNothingLeft(h, id, [], before);
    const routes = await ipJson<{ dst: string; dev: string }[]>([
      "-4",
      "route",
      "show",
      "table",
      "all",
      addr,
    ]);
    expect(routes.map((r) => [r.dst, r.dev])).toEqual([[addr, "lo"]]);
    expect(await ipJson<unknown[]>(["neigh", "show", "to", addr])).toEqual([]);
    expect(await ipJson<PodLink[]>(["link", "show"], pod.name)).toHaveLength(1);
    expect(readDatapathMaps(h.bpffsDir).counters).toEqual([]);
  });

  it("unwiring under traffic leaves no counter entries behind (device goes before the map state)", async () => {
    const h = await createHarness(scope);
    const [src, dst] = await Promise.all([createPod(scope, "tsrc"), createPod(scope, "tdst")]);
    const sender = await h.pods.admit({ id: h.newId("tsrc"), netnsPath: src.path });
    for (let round = 0; round < 5; round++) {
      const id = h.newId(`tdst${round}`);
      const ep = await h.pods.admit({ id, netnsPath: dst.path });
      // Pod -> pod (counted against the destination) and host -> pod (TO_CONTAINER), both
      // still running while the endpoint is unwired.
      const floods = [
        inNetns(src.path, "ping", ["-q", "-i", "0.002", "-w", "1", ep.addresses.ipv4!]).catch(
          () => undefined,
        ),
        run("ping", ["-q", "-i", "0.002", "-w", "1", ep.addresses.ipv4!]).catch(() => undefined),
      ];
      await new Promise((r) => setTimeout(r, 300));
      expect(h.mgr.counters(id).REDIRECT_PEER?.packets ?? 0n).toBeGreaterThan(0n);
      expect(await h.pods.release(id)).toBe(true);
      await Promise.all(floods);
      const state = await datapathState(h);
      expect(state.orphanCounters, `round ${round}`).toEqual([]);
      expect(readDatapathMaps(h.bpffsDir).counters.filter((k) => k.ep_id !== sender.epNum)).toEqual([]);
      await expectNothingLeft(h, id, [ep.addresses.ipv4!, ep.addresses.ipv6!]);
    }
  });
});

describe("netkit on a kernel without netkit", () => {
  it("fails once at EndpointManager.start with NotSupportedError, creating nothing", async () => {
    const base = mkdtempSync(join(tmpdir(), "nkit-nk-"));
    scope.defer(() => rmSync(base, { recursive: true, force: true }));
    const stateDir = join(base, "state");
    const bpffsDir = uniqueBpffsDir("netkit");
    scope.defer(() => rmSync(bpffsDir, { recursive: true, force: true }));
    const linksBefore = await hostLinkNames();
    const fdsBefore = readdirSync("/proc/self/fd").length;

    const err = await failure(EndpointManager.start({ mode: "netkit", bpffsDir, stateDir }));
    expect(err).toBeInstanceOf(NotSupportedError);
    expect((err as NotSupportedError).feature).toMatch(/netkit/);
    expect(err.message).toMatch(/netkit/);
    expect(err.message).toMatch(/needs/);

    expect(existsSync(bpffsDir), "bpffs dir").toBe(false);
    expect(existsSync(stateDir), "state dir").toBe(false);
    expect(await hostLinkNames()).toEqual(linksBefore);
    expect(readdirSync("/proc/self/fd").length).toBe(fdsBefore);

    // "auto" falls back to veth on the same kernel.
    const mgr = await EndpointManager.start({ mode: "auto", bpffsDir, stateDir });
    scope.defer(() => mgr.close());
    expect(mgr.mode).toBe("veth");
  });
});

describe("repeated and conflicting requests", () => {
  it("unwire answers with the endpoint off the datapath; another container can take its netns, name and addresses at once", async () => {
    const h = await createHarness(scope);
    const [pod, peer] = await Promise.all([createPod(scope, "reuse"), createPod(scope, "reuse-peer")]);
    const idA = h.newId("reuse-a");
    const idB = h.newId("reuse-b");
    const a = await h.mgr.wire({
      id: idA,
      netnsPath: pod.path,
      addresses: { ipv4: spareV4(h, 201), ipv6: h.cidr6.replace(/::\/64$/, "::c9") },
    });
    const p = await h.pods.admit({ id: h.newId("reuse-p"), netnsPath: peer.path });
    expect(await ping(peer, a.addresses.ipv4!, 1)).toBe(true);

    expect(await h.mgr.unwire(idA)).toBe(true);
    // Off the datapath the moment unwire answers: no listing, no route, no map entry for its addresses.
    expect(h.mgr.get(idA)).toBeUndefined();
    const maps = readDatapathMaps(h.bpffsDir);
    expect(
      [...maps.endpoints.keys()].filter((k) => k === a.addresses.ipv4 || k === a.addresses.ipv6),
    ).toEqual([]);
    const routes = await ipJson<{ dst: string }[]>(["-4", "route", "show", `${a.addresses.ipv4}/32`]);
    expect(routes).toEqual([]);

    // Another container into the same netns, interface name and addresses, right away.
    const b = await h.mgr.wire({ id: idB, netnsPath: pod.path, addresses: a.addresses });
    expect(b.addresses).toEqual(a.addresses);
    const links = await ipJson<PodLink[]>(["link", "show"], pod.name);
    expect(links.map((l) => l.ifname).sort()).toEqual(["eth0", "lo"]);
    expect(await ping(peer, b.addresses.ipv4!, 1)).toBe(true);
    expect(await ping(peer, b.addresses.ipv6!, 1)).toBe(true);
    await h.mgr.settled(idA);
    expect((await hostLinkNames()).has(a.hostIfName)).toBe(false);
    expect((await hostLinkNames()).has(b.hostIfName)).toBe(true);
    await h.mgr.unwire(idB);
    await h.pods.release(p.id);
  });

  it("wire is idempotent, unwire twice is fine, another netns is refused while wired", async () => {
    const h = await createHarness(scope);
    const [pod, other] = await Promise.all([createPod(scope, "idem"), createPod(scope, "other")]);
    const id = h.newId("idem");

    // Two concurrent calls for one id are serialized: one device, one allocation.
    const [first, second] = await Promise.all([
      h.pods.admit({ id, netnsPath: pod.path }),
      h.pods.admit({ id, netnsPath: pod.path }),
    ]);
    expect(second).toEqual(first);
    const state = await datapathState(h);
    expect(state.hostDevices).toEqual([first.hostIfName]);
    expect(state.ipamUsed).toEqual([1, 1]);

    const again = await h.pods.admit({ id, netnsPath: pod.path });
    expect(again).toEqual(first);
    expect(await datapathState(h)).toEqual(state);
    expect(h.mgr.list().map((e) => e.id)).toEqual([id]);

    const err = await failure(h.pods.admit({ id, netnsPath: other.path }));
    expect(err).toBeInstanceOf(AlreadyExistsError);
    expect(err.message).toContain(pod.path);
    expect(err.message).toContain(other.path);
    expect(await datapathState(h)).toEqual(state);
    expect(await ipJson<PodLink[]>(["link", "show"], other.name)).toHaveLength(1);
    expect(h.mgr.get(id)).toEqual(first);

    expect(await h.pods.release(id)).toBe(true);
    expect(await h.pods.release(id)).toBe(false);
    await expectNothingLeft(h, id, [first.addresses.ipv4!, first.addresses.ipv6!]);
    expect(h.mgr.get(id)).toBeUndefined();

    // Now the other netns is fine.
    const moved = await h.pods.admit({ id, netnsPath: other.path });
    expect(moved.netnsPath).toBe(other.path);
  });
});
