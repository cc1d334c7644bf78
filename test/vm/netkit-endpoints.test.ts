// EndpointManager in netkit mode on a netkit kernel (VM lane only): L3 pairs with peer policy
// blackhole, programs attached as netkit peer/primary links, pod <-> pod over IPv4 and IPv6 through
// bpf_redirect to the destination primary (bpf_redirect_peer is only allowed at tc ingress), unwire leaves nothing, and a new manager adopts the pinned links.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { BpfLink, queryAttached } from "../../src/bpf/index.js";
import { EndpointManager } from "../../src/datapath/endpoint-manager.js";
import { Rtnl } from "../../src/netlink/index.js";
import { Scope } from "../helpers/scope.js";
import { createHarness, createPod, type Harness, ping } from "../integration/datapath-fixture.js";

let scope: Scope;
let h: Harness;
beforeEach(async () => {
  scope = new Scope();
  h = await createHarness(scope, { mode: "netkit" });
});
afterEach(() => scope.close());

const packets = (c: Record<string, { packets: bigint }>, r: string): bigint => c[r]?.packets ?? 0n;

describe("EndpointManager in netkit mode", () => {
  it("wires L3 netkit pairs that carry pod <-> pod traffic through the destination primary, v4 and v6", async () => {
    expect(h.mgr.mode).toBe("netkit");
    const [nsA, nsB] = [await createPod(scope, "a"), await createPod(scope, "b")];
    const a = await h.pods.admit({ id: h.newId("a"), netnsPath: nsA.path });
    // The link that polices the pod runs before the wiring answers (fail closed); the counting
    // to-container link may follow, and settled() waits for it.
    expect(queryAttached(a.hostIfindex, "netkit-peer").programs).toHaveLength(1);
    await h.mgr.settled(a.id);
    const b = await h.pods.admit({ id: h.newId("b"), netnsPath: nsB.path });
    await h.mgr.settled(b.id);
    expect(a.mode).toBe("netkit");
    const host = await Rtnl.host();
    try {
      const link = await host.requireLink(a.hostIfName);
      expect(link.kind).toBe("netkit");
      expect(link.netkit).toMatchObject({ primary: true, mode: "l3", policy: "pass", peerPolicy: "drop" });
    } finally {
      await host.close();
    }
    const peer = queryAttached(a.hostIfindex, "netkit-peer");
    const primary = queryAttached(a.hostIfindex, "netkit-primary");
    expect(peer.programs).toHaveLength(1);
    expect(primary.programs).toHaveLength(1);
    expect(peer.programs[0]?.linkId).toBeGreaterThan(0);

    expect(await ping(nsA, b.addresses.ipv4!, 3)).toBe(true);
    expect(await ping(nsA, b.addresses.ipv6!, 3)).toBe(true);
    expect(packets(h.mgr.counters(b.id), "REDIRECT_LOCAL")).toBeGreaterThanOrEqual(6n);
    expect(packets(h.mgr.counters(a.id), "REDIRECT_LOCAL")).toBeGreaterThanOrEqual(6n);
    // Each primary counts what it delivers against its own endpoint (the replies to A, the requests
    // to B), never against a host device that shares the index of the pod's end.
    expect(packets(h.mgr.counters(a.id), "TO_CONTAINER")).toBeGreaterThanOrEqual(6n);
    expect(packets(h.mgr.counters(b.id), "TO_CONTAINER")).toBeGreaterThanOrEqual(6n);
    expect(packets(h.mgr.counters(a.id), "TO_STACK")).toBe(0n);

    // Unwire: device, links and pins gone.
    await h.pods.release(a.id);
    await h.mgr.settled(a.id); // the pair's deletion follows the unwire's answer
    expect(existsSync(join(h.bpffsDir, "endpoints", a.hostIfName))).toBe(false);
    const host2 = await Rtnl.host();
    try {
      expect(await host2.getLink(a.hostIfName)).toBeUndefined();
    } finally {
      await host2.close();
    }
    expect(await ping(nsB, a.addresses.ipv4!, 1)).toBe(false);
  });

  it("blackholes a pod whose programs are gone (peer policy drop) and adopts pinned links in a new manager", async () => {
    const [nsA, nsB] = [await createPod(scope, "a"), await createPod(scope, "b")];
    const a = await h.pods.admit({ id: h.newId("a"), netnsPath: nsA.path });
    const b = await h.pods.admit({ id: h.newId("b"), netnsPath: nsB.path });
    const pin = join(h.bpffsDir, "endpoints", a.hostIfName, "from-container");
    const before = BpfLink.fromPin(pin);
    const infoBefore = before.info();
    before.close();

    // A second manager on the same dirs adopts: same links, new programs, traffic keeps flowing.
    const again = await EndpointManager.start({
      mode: "netkit",
      bpffsDir: h.bpffsDir,
      stateDir: h.stateDir,
    });
    scope.defer(() => again.close());
    expect(
      again
        .list()
        .map((e) => e.id)
        .sort(),
    ).toEqual([a.id, b.id].sort());
    const after = BpfLink.fromPin(pin);
    const infoAfter = after.info();
    after.close();
    expect(infoAfter.id).toBe(infoBefore.id);
    expect(infoAfter.programId).not.toBe(infoBefore.programId);
    expect(await ping(nsA, b.addresses.ipv4!, 2)).toBe(true);

    // Remove the pod's from-container link: the peer policy blackholes it, nothing leaves.
    const { rmSync } = await import("node:fs");
    rmSync(pin);
    await new Promise((r) => setTimeout(r, 200)); // link release is deferred to a workqueue
    expect(queryAttached(a.hostIfindex, "netkit-peer").programs).toHaveLength(0);
    expect(await ping(nsA, b.addresses.ipv4!, 2)).toBe(false);
  });

  it("attaches only the link a restart finds missing (a crash before the deferred to-container attach)", async () => {
    const [nsA, nsB] = [await createPod(scope, "a"), await createPod(scope, "b")];
    const a = await h.pods.admit({ id: h.newId("a"), netnsPath: nsA.path });
    const b = await h.pods.admit({ id: h.newId("b"), netnsPath: nsB.path });
    await Promise.all([h.mgr.settled(a.id), h.mgr.settled(b.id)]);
    const dir = join(h.bpffsDir, "endpoints", a.hostIfName);
    const fromBefore = BpfLink.fromPin(join(dir, "from-container"));
    const fromId = fromBefore.info().id;
    fromBefore.close();
    const { rmSync } = await import("node:fs");
    rmSync(join(dir, "to-container"));
    await new Promise((r) => setTimeout(r, 200)); // link release is deferred to a workqueue
    expect(queryAttached(a.hostIfindex, "netkit-primary").programs).toHaveLength(0);

    const again = await EndpointManager.start({ mode: "netkit", bpffsDir: h.bpffsDir, stateDir: h.stateDir });
    scope.defer(() => again.close());
    expect(queryAttached(a.hostIfindex, "netkit-primary").programs).toHaveLength(1);
    const fromAfter = BpfLink.fromPin(join(dir, "from-container"));
    expect(fromAfter.info().id).toBe(fromId); // kept running throughout, not attached again
    fromAfter.close();
    expect(existsSync(join(dir, "to-container"))).toBe(true);
    expect(await ping(nsA, b.addresses.ipv4!, 2)).toBe(true);
    expect(packets(again.counters(a.id), "TO_CONTAINER")).toBeGreaterThanOrEqual(2n);
  });
});
