// Real traffic through the endpoint datapath on this kernel (veth + tc): pod <-> pod through
// bpf_redirect_peer, pod <-> host through the stack, pod <-> outside through bpf_fib_lookup +
// bpf_redirect_neigh and back through the uplink program. Counters prove which path carried it.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { sysctlRead, sysctlWrite } from "../../src/netlink/index.js";
import { Scope } from "../helpers/scope.js";
import { inNetns } from "../helpers/sys.js";
import {
  addSpoofedAddress,
  createHarness,
  createOutside,
  createPod,
  type Harness,
  ping,
  probeEcho,
  startEcho,
  wirePodPair,
} from "./datapath-fixture.js";

let scope: Scope;
let h: Harness;
beforeEach(async () => {
  scope = new Scope();
  h = await createHarness(scope);
});
afterEach(() => scope.close());

const packets = (c: Record<string, { packets: bigint }>, reason: string): bigint => c[reason]?.packets ?? 0n;

describe("endpoint datapath traffic (veth + tc)", () => {
  it("carries ICMP, TCP and UDP between two local pods over IPv4 and IPv6 with redirect_peer", async () => {
    const { podA, podB, a, b } = await wirePodPair(scope, h);
    expect(a.mode).toBe("veth");
    expect(a.hostIfName).toMatch(/^nk[0-9a-f]{11}$/);
    const [b4, b6] = [b.addresses.ipv4!, b.addresses.ipv6!];

    expect(await ping(podA, b4, 3)).toBe(true);
    expect(await ping(podA, b6, 3)).toBe(true);
    await startEcho(scope, podB, b4, 7001);
    await startEcho(scope, podB, b6, 7002);
    await probeEcho(podA, b4, 7001);
    await probeEcho(podA, b6, 7002);

    const ca = h.mgr.counters(a.id);
    const cb = h.mgr.counters(b.id);
    // A's packets to B are counted against B (the destination endpoint), and vice versa.
    expect(packets(cb, "REDIRECT_PEER")).toBeGreaterThanOrEqual(6n);
    expect(packets(ca, "REDIRECT_PEER")).toBeGreaterThanOrEqual(6n);
    // None of it went up the host stack.
    expect(packets(ca, "TO_STACK")).toBe(0n);
    expect(packets(cb, "TO_STACK")).toBe(0n);
  });

  it("connects pods with the host in both directions", async () => {
    const out = await createOutside(scope, h);
    const pod = await createPod(scope, "p");
    const ep = await h.pods.admit({ id: h.newId("p"), netnsPath: pod.path });
    // Host -> pod: host route via the endpoint's device, tcx egress counts it.
    await startEcho(scope, pod, ep.addresses.ipv4!, 7003);
    await probeEcho(undefined, ep.addresses.ipv4!, 7003);
    // Pod -> host: an address of the host (on the uplink) is local, so it goes to the stack.
    expect(await ping(pod, out.hostV4)).toBe(true);
    expect(await ping(pod, out.hostV6)).toBe(true);
    const c = h.mgr.counters(ep.id);
    expect(packets(c, "TO_CONTAINER")).toBeGreaterThan(0n);
    expect(packets(c, "TO_STACK")).toBeGreaterThanOrEqual(4n);
  });

  it("routes a pod to an outside netns with redirect_neigh and back through the uplink program", async () => {
    // No global forwarding switch, v4 or v6: bpf_fib_lookup checks only the pod's host device,
    // which wiring turns on (what README and `nkit doctor` promise).
    for (const key of ["net/ipv6/conf/all/forwarding", "net/ipv4/ip_forward"]) {
      const was = (await sysctlRead(key)).trim();
      if (was === "0") continue;
      await sysctlWrite(key, 0);
      scope.defer(() => sysctlWrite(key, was));
    }
    const out = await createOutside(scope, h);
    const pod = await createPod(scope, "p");
    const ep = await h.pods.admit({ id: h.newId("p"), netnsPath: pod.path });
    expect(await ping(pod, out.outsideV4, 3)).toBe(true);
    expect(await ping(pod, out.outsideV6, 3)).toBe(true);
    await startEcho(scope, out.ns, out.outsideV4, 7004);
    await probeEcho(pod, out.outsideV4, 7004);
    const c = h.mgr.counters(ep.id);
    expect(packets(c, "REDIRECT_NEIGH")).toBeGreaterThanOrEqual(6n);
    expect(packets(c, "FROM_UPLINK")).toBeGreaterThanOrEqual(6n);
  });

  it("drops and counts packets with a source address the endpoint does not own", async () => {
    const { podA, a, b } = await wirePodPair(scope, h);
    // Steal B's neighbour's address space: an extra address A was never given.
    const spoofed = await addSpoofedAddress(podA, a, 250);
    const before = packets(h.mgr.counters(a.id), "DROP_SPOOFED_SOURCE");
    await expect(
      inNetns(podA.path, "ping", ["-c", "3", "-i", "0.2", "-W", "1", "-q", "-I", spoofed, b.addresses.ipv4!]),
    ).rejects.toThrow();
    expect(packets(h.mgr.counters(a.id), "DROP_SPOOFED_SOURCE") - before).toBe(3n);
    expect(packets(h.mgr.counters(b.id), "REDIRECT_PEER")).toBe(0n);
    // The real address still works.
    expect(await ping(podA, b.addresses.ipv4!)).toBe(true);
  });
});
