// The CRI pod flow on the real datapath: reserve (CNI ADD) -> run (NRI RUN) -> stop -> remove,
// plus Synchronize wiring reserved-but-unwired pods and collecting pods that no longer exist.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { hostIfName } from "../../src/datapath/naming.js";
import { Rtnl } from "../../src/netlink/index.js";
import { PodLifecycle, type PodSandbox } from "../../src/pods/lifecycle.js";
import { Scope } from "../helpers/scope.js";
import { inNetns } from "../helpers/sys.js";
import { createHarness, createPod, type Harness, ping } from "./datapath-fixture.js";

let scope: Scope;
let h: Harness;
let pods: PodLifecycle;
beforeEach(async () => {
  scope = new Scope();
  h = await createHarness(scope);
  pods = new PodLifecycle(h.mgr, h.ipam);
});
afterEach(() => scope.close());

function sandbox(id: string, netnsPath?: string): PodSandbox {
  return {
    id,
    name: `web-${id.slice(-4)}`,
    namespace: "default",
    uid: `uid-${id}`,
    labels: { app: "web" },
    annotations: {},
    netnsPath,
  };
}

async function hostDeviceExists(id: string): Promise<boolean> {
  const host = await Rtnl.host();
  try {
    return (await host.getLink(hostIfName(id))) !== undefined;
  } finally {
    await host.close();
  }
}

describe("CRI pod lifecycle", () => {
  it("wires a reserved pod at RUN with the reserved addresses and labels, unwires at STOP, releases at REMOVE", async () => {
    const [nsA, nsB] = [await createPod(scope, "a"), await createPod(scope, "b")];
    const [idA, idB] = [h.newId("a"), h.newId("b")];
    const resA = pods.reserve(idA);
    const resB = pods.reserve(idB);
    // Reserving twice (CNI ADD retried) gives the same addresses.
    expect(pods.reserve(idA)).toEqual(resA);
    const epA = await pods.run(sandbox(idA, nsA.path));
    await pods.run(sandbox(idB, nsB.path));
    expect(epA?.addresses).toEqual({ ipv4: resA.ipv4, ipv6: resA.ipv6 });
    expect(epA?.labels).toMatchObject({ app: "web", "nkit.io/pod-namespace": "default" });
    expect(await ping(nsA, resB.ipv4!)).toBe(true);

    // STOP may come without a netns path; the reservation survives it.
    await pods.stop({ id: idA });
    expect(h.mgr.get(idA)).toBeUndefined();
    expect(await hostDeviceExists(idA)).toBe(false);
    expect(h.ipam.get(idA)).toMatchObject({ ipv4: resA.ipv4 });
    await pods.remove({ id: idA });
    expect(h.ipam.get(idA)).toBeUndefined();
    // REMOVE twice (runtime retry) is fine.
    await pods.remove({ id: idA });
  });

  it("leaves pods without a reservation alone and fails a reserved pod without a netns", async () => {
    const ns = await createPod(scope, "x");
    expect(await pods.run(sandbox(h.newId("foreign"), ns.path))).toBeUndefined();
    const id = h.newId("nons");
    pods.reserve(id);
    await expect(pods.run(sandbox(id))).rejects.toThrow(/has no network namespace path/);
    expect(await hostDeviceExists(id)).toBe(false);
  });

  it("synchronize wires running pods that lack wiring and collects pods that are gone", async () => {
    const live = await createPod(scope, "live");
    const liveId = h.newId("live");
    pods.reserve(liveId);
    // A pod removed while nkitd was away: wired and reserved by a previous process.
    const goneNs = await createPod(scope, "gone");
    const goneId = h.newId("gone");
    const previous = new PodLifecycle(h.mgr, h.ipam);
    previous.reserve(goneId);
    await previous.run(sandbox(goneId, goneNs.path));
    // A new nkitd, once the reservations are older than the grace period.
    const fresh = new PodLifecycle(h.mgr, h.ipam, undefined, 0);
    // What else a pod holds (nkitd: its host ports and CNI attachment) is told to go with it.
    const released: string[] = [];
    fresh.onReleased((id) => released.push(id));
    const r = await fresh.synchronize([sandbox(liveId, live.path)]);
    expect(released).toEqual([goneId]);
    expect(r.wired).toEqual([liveId]);
    expect(r.collected).toEqual([goneId]);
    expect(r.failed).toEqual([]);
    expect(h.mgr.get(liveId)).toBeDefined();
    expect(h.mgr.get(goneId)).toBeUndefined();
    expect(h.ipam.get(goneId)).toBeUndefined();
    expect(await hostDeviceExists(goneId)).toBe(false);
  });

  it("synchronize never collects a fresh reservation (pod between CNI ADD and RUN) or a non-CRI endpoint", async () => {
    const id = h.newId("fresh");
    pods.reserve(id);
    const ns = await createPod(scope, "cni");
    const cniId = h.newId("cni");
    // nerdctl/Nomad path: wired by nkit-cni in wire mode, owned by "cni".
    const a = h.ipam.allocate(cniId, { owner: "cni" });
    await h.mgr.wire({ id: cniId, netnsPath: ns.path, addresses: { ipv4: a.ipv4!, ipv6: a.ipv6! } });
    const r = await pods.synchronize([]);
    expect(r.collected).toEqual([]);
    expect(h.ipam.get(id)).toBeDefined();
    expect(h.mgr.get(cniId)).toBeDefined();
    await h.mgr.unwire(cniId);
    h.ipam.release(cniId);
  });

  it("pre-wires at CNI ADD; RUN then only waits and applies the pod's labels", async () => {
    const ns = await createPod(scope, "pre");
    const id = h.newId("pre");
    const res = pods.reserve(id);
    const addresses = { ipv4: res.ipv4!, ipv6: res.ipv6! };
    pods.prewire({ id, netnsPath: ns.path, ifName: "eth0", addresses, labels: { "cni.arg": "x" } });
    await pods.settle(id);
    // Wired before RUN arrives, with the CNI-time labels.
    expect(h.mgr.get(id)?.labels).toEqual({ "cni.arg": "x" });
    const ep = await pods.run(sandbox(id, ns.path));
    expect(ep?.addresses).toEqual(addresses);
    expect(ep?.labels).toMatchObject({ app: "web", "nkit.io/pod-uid": `uid-${id}` });
    expect(h.mgr.get(id)?.labels["nkit.io/pod-uid"]).toBe(`uid-${id}`);
    expect(h.mgr.list().filter((e) => e.id === id)).toHaveLength(1);
  });

  it("a CNI DEL racing a pre-wiring waits for it and leaves nothing", async () => {
    const ns = await createPod(scope, "race");
    const id = h.newId("race");
    const res = pods.reserve(id);
    pods.prewire({
      id,
      netnsPath: ns.path,
      ifName: "eth0",
      addresses: { ipv4: res.ipv4!, ipv6: res.ipv6! },
      labels: {},
    });
    await pods.release(id);
    expect(h.mgr.get(id)).toBeUndefined();
    expect(h.ipam.get(id)).toBeUndefined();
    expect(await hostDeviceExists(id)).toBe(false);
  });

  it("RUN re-wires a pre-wired pod whose network was changed in between", async () => {
    const ns = await createPod(scope, "chg");
    const id = h.newId("chg");
    const res = pods.reserve(id);
    pods.prewire({
      id,
      netnsPath: ns.path,
      ifName: "eth0",
      addresses: { ipv4: res.ipv4!, ipv6: res.ipv6! },
      labels: {},
    });
    await pods.settle(id);
    const before = h.mgr.get(id)!;
    // Something in the sandbox (its sysctls, say) drops an address after CNI ADD.
    await inNetns(ns.path, "ip", ["addr", "del", `${res.ipv6}/128`, "dev", "eth0"]);
    expect(await h.mgr.verify(id)).toMatch(/lost address/);
    const ep = await pods.run(sandbox(id, ns.path));
    expect(ep?.hostIfindex).not.toBe(before.hostIfindex);
    expect(await h.mgr.verify(id)).toBeUndefined();
  });
});

describe("admission (admin API, wire-mode CNI, demo)", () => {
  it("admits with IPAM addresses, undoes a failed admission, and evicts only what it admitted", async () => {
    const ns = await createPod(scope, "adm");
    const id = h.newId("adm");
    // A wiring that fails (the host's own netns) gives back the reservation it made.
    await expect(pods.admit({ id, netnsPath: "/proc/self/ns/net" })).rejects.toThrow(
      /host's own network namespace/,
    );
    expect(h.ipam.get(id)).toBeUndefined();

    const ep = await pods.admit({ id, netnsPath: ns.path, labels: { app: "adm" } });
    expect(h.ipam.get(id)).toMatchObject({ ipv4: ep.addresses.ipv4, ipv6: ep.addresses.ipv6, owner: "api" });
    expect(await pods.evict(id)).toBe(true);
    expect(h.ipam.get(id)).toBeUndefined();
    expect(await pods.evict(id)).toBe(false);

    // A CRI pod's endpoint is unwired by evict, its reservation stays for NRI REMOVE / CNI DEL.
    const cri = h.newId("cri");
    const res = pods.reserve(cri);
    await pods.run(sandbox(cri, ns.path));
    expect(await pods.evict(cri)).toBe(true);
    expect(h.mgr.get(cri)).toBeUndefined();
    expect(h.ipam.get(cri)).toEqual(res);
    await pods.remove({ id: cri });
    expect(h.ipam.get(cri)).toBeUndefined();
  });
});
