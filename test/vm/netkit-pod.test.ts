// netkit on a netkit kernel (VM lane only): the probe says supported, a pod's pair is created with its
// peer directly in the pod netns through src/netlink, v4 and v6 traffic flows through it, and a pod
// whose peer policy is blackhole passes nothing while no program is attached.
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { probeAll, probeNetkit, requireNetkit } from "../../src/bpf/index.js";
import { Scope } from "../helpers/scope.js";
import { ipJson, run } from "../helpers/sys.js";
import {
  createNetkitPod,
  linkStats,
  pingFails,
  pingFromHost,
  pingFromPod,
  requireNetkitKernel,
} from "./netkit-pod.js";

let scope: Scope;

beforeAll(() => requireNetkitKernel());

beforeEach(() => {
  scope = new Scope();
});

afterEach(async () => {
  await scope.close();
});

interface IpNetkitLink {
  ifname: string;
  flags: string[];
  linkinfo?: { info_kind: string; info_data?: Record<string, unknown> };
}

describe("netkit kernel", () => {
  it("probes netkit as supported", () => {
    expect(probeNetkit()).toEqual({ supported: true });
    expect(() => requireNetkit()).not.toThrow();
    expect(probeAll()).toMatchObject({ netkit: { supported: true }, tcx: { supported: true } });
  });
});

describe("netkit pod wiring through src/netlink", () => {
  it("creates an L3 pair with the peer in the pod netns, addresses it and passes v4 and v6 traffic", async () => {
    const p = await createNetkitPod(scope);
    expect(p.primary).toMatchObject({ kind: "netkit", up: true });
    expect(p.primary.netkit).toMatchObject({ primary: true, mode: "l3", policy: "pass", peerPolicy: "pass" });
    expect(p.peer).toMatchObject({ kind: "netkit", name: "eth0", index: p.primary.peerIndex });
    expect(p.peer.netkit).toMatchObject({ primary: false, mode: "l3" });
    expect((await p.pod.listLinks()).map((l) => l.name).sort()).toEqual(["eth0", "lo"]);

    // our dumps and iproute2's view of the pod
    const addrs = (await p.pod.listAddresses({ link: "eth0" })).map((a) => `${a.address}/${a.prefixLength}`);
    expect(addrs).toEqual(expect.arrayContaining([`${p.podV4}/32`, `${p.podV6}/128`]));
    const [ipPeer] = await ipJson<IpNetkitLink[]>(["-d", "link", "show", "dev", "eth0"], p.ns.name);
    expect(ipPeer?.linkinfo).toMatchObject({ info_kind: "netkit", info_data: { mode: "l3", type: "peer" } });
    expect(ipPeer?.flags).toEqual(expect.arrayContaining(["NOARP", "UP"]));

    await pingFromHost(p.podV4);
    await pingFromHost(p.podV6);
    await pingFromPod(p, p.hostV4);
    await pingFromPod(p, p.hostV6);
  });

  it("passes nothing from a pod whose peer policy is blackhole while no program is attached", async () => {
    const p = await createNetkitPod(scope, { policy: "forward", peerPolicy: "blackhole" });
    expect(p.primary.netkit).toMatchObject({ policy: "pass", peerPolicy: "drop" });
    const [ipPrimary] = await ipJson<IpNetkitLink[]>(["-d", "link", "show", "dev", p.primary.name]);
    expect(ipPrimary?.linkinfo?.info_data).toMatchObject({ policy: "forward", peer_policy: "blackhole" });

    const before = await linkStats("eth0", p.ns.name);
    // host → pod: the request gets in (primary forwards), the reply is dropped at the peer
    expect(await pingFails(p.podV4)).toBe(true);
    expect(await pingFails(p.podV6)).toBe(true);
    // pod → host: dropped at once
    expect(await pingFails(p.hostV4, p.ns.path)).toBe(true);
    const after = await linkStats("eth0", p.ns.name);
    expect(after.rx.packets - before.rx.packets).toBeGreaterThanOrEqual(4); // the requests arrived
    expect(after.tx.dropped - before.tx.dropped).toBeGreaterThanOrEqual(6); // replies + own requests
    expect(after.tx.packets - before.tx.packets).toBe(0); // not one packet left the pod

    // Flipping the peer policy (RTM_NEWLINK on the primary with iproute2) opens the pod: the
    // drops above came from the policy, not from the wiring.
    await run("ip", ["link", "set", p.primary.name, "type", "netkit", "peer", "forward"]);
    expect((await p.host.requireLink(p.primary.name)).netkit?.peerPolicy).toBe("pass");
    await pingFromHost(p.podV4);
  });
});
