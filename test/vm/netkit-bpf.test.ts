// BPF on netkit through src/bpf (VM lane only): programs attached as netkit peer and primary links
// open a fail-closed (peer blackhole) pod, pinned links survive their process's handles and are
// swapped with BPF_LINK_UPDATE, and unwiring leaves no device, no attachment and no pin behind.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  BpfLink,
  BpfObject,
  openMaps,
  type PerCpuMap,
  PinDir,
  queryAttached,
  sumCounters,
} from "../../src/bpf/index.js";
import { Direction, type HookCounter, type HookKey, HookSlot } from "../helpers/bpf-test-structs.js";
import { counterObject } from "../helpers/gen/counter.skel.js";
import { uniqueBpffsDir } from "../helpers/names.js";
import { Scope } from "../helpers/scope.js";
import {
  COUNTER_OBJ,
  createNetkitPod,
  type NetkitPod,
  pingFails,
  pingFromHost,
  pingFromPod,
  requireNetkitKernel,
} from "./netkit-pod.js";

let scope: Scope;

beforeAll(() => {
  requireNetkitKernel();
  if (!existsSync(COUNTER_OBJ)) throw new Error(`${COUNTER_OBJ} is missing: run \`npm run build:bpf\``);
});

beforeEach(() => {
  scope = new Scope();
});

afterEach(async () => {
  await scope.close();
});

/** Packets counted by the counter programs in one direction and slot, summed over CPUs and devices. */
function counted(map: PerCpuMap<HookKey, HookCounter>, direction: number, slot: number): bigint {
  let packets = 0n;
  for (const [k, v] of map.entries()) {
    if (k.direction === direction && k.slot === slot) packets += sumCounters(v).packets;
  }
  return packets;
}

async function blackholePod(): Promise<{ p: NetkitPod; pins: PinDir }> {
  const pins = new PinDir(uniqueBpffsDir("nk"));
  scope.defer(() => pins.removeAll());
  const p = await createNetkitPod(scope, { policy: "forward", peerPolicy: "blackhole" });
  return { p, pins };
}

function bpftoolLinkIds(): number[] {
  const out = execFileSync("bpftool", ["-j", "link", "show"], { encoding: "utf8" });
  return (JSON.parse(out || "[]") as { id: number }[]).map((l) => l.id);
}

describe("netkit BPF links", () => {
  it("attaches peer and primary programs that open a blackhole pod and count its traffic", async () => {
    const { p, pins } = await blackholePod();
    expect(await pingFails(p.podV4)).toBe(true); // fail-closed before any program

    const obj = BpfObject.load(COUNTER_OBJ, { pinRoot: pins.root });
    scope.defer(() => obj.close());
    // from-container at the peer, to-container at the primary, both through the primary's ifindex
    const peer = BpfLink.attachNetkit(obj.program("nk_count_egress"), {
      primaryIfindex: p.primary.index,
      kind: "peer",
    });
    scope.defer(() => peer.close());
    const primary = BpfLink.attachNetkit(obj.program("nk_count_ingress"), {
      primaryIfindex: p.primary.index,
      kind: "primary",
    });
    scope.defer(() => primary.close());

    // A peer link's ifindex is the primary's on some kernels and the peer's (inside the pod) on
    // others (Debian's 6.12.95); the query through the primary below is what places it.
    expect(peer.info()).toMatchObject({
      typeName: "netkit",
      ifindex: expect.any(Number),
      attachPoint: "netkit-peer",
      attached: true,
      programId: obj.program("nk_count_egress").id,
    });
    expect(primary.info()).toMatchObject({ attachPoint: "netkit-primary", ifindex: p.primary.index });
    expect(queryAttached(p.primary.index, "netkit-peer").programs).toEqual([
      { programId: obj.program("nk_count_egress").id, linkId: peer.id },
    ]);
    expect(queryAttached(p.primary.index, "netkit-primary").programs).toEqual([
      { programId: obj.program("nk_count_ingress").id, linkId: primary.id },
    ]);

    // the programs return TCX_NEXT (== NETKIT_NEXT): with a program attached the verdict is the
    // program's, so the peer's blackhole policy no longer applies
    await pingFromHost(p.podV4, 5);
    await pingFromPod(p, p.hostV4, 3);
    const counters = openMaps(obj, counterObject.maps).nk_hook_counters;
    // towards the pod: 5 requests + 3 replies; from the pod: 5 replies + 3 requests
    expect(counted(counters, Direction.INGRESS, HookSlot.PRIMARY)).toBeGreaterThanOrEqual(8n);
    expect(counted(counters, Direction.EGRESS, HookSlot.PRIMARY)).toBeGreaterThanOrEqual(8n);

    // closing the only fd of an unpinned peer link detaches it: the pod is blackholed again
    peer.close();
    expect(queryAttached(p.primary.index, "netkit-peer").programs).toEqual([]);
    expect(await pingFails(p.podV4)).toBe(true);
  });

  it("keeps pinned links attached without any handle, reopens them from the pin and updates them", async () => {
    const { p, pins } = await blackholePod();
    pins.ensure();
    const peerPin = pins.path("link-peer");
    const primaryPin = pins.path("link-primary");

    // an "agent" attaches and pins, then goes away (all of its fds closed)
    const first = BpfObject.load(COUNTER_OBJ, { pinRoot: pins.root });
    const firstPeerProg = first.program("nk_count_egress").id;
    const l1 = BpfLink.attachNetkit(first.program("nk_count_egress"), {
      primaryIfindex: p.primary.index,
      kind: "peer",
    });
    l1.pin(peerPin);
    const l2 = BpfLink.attachNetkit(first.program("nk_count_ingress"), {
      primaryIfindex: p.primary.index,
      kind: "primary",
    });
    l2.pin(primaryPin);
    const peerLinkId = l1.id;
    l1.close();
    l2.close();
    first.close();

    expect(queryAttached(p.primary.index, "netkit-peer").programs).toEqual([
      { programId: firstPeerProg, linkId: peerLinkId },
    ]);
    await pingFromHost(p.podV4, 3); // still open: the pinned links carry the datapath

    // the "restarted agent" reopens the pinned links and swaps the programs in place
    const second = BpfObject.load(COUNTER_OBJ, { pinRoot: pins.root });
    scope.defer(() => second.close());
    const peer = BpfLink.fromPin(peerPin);
    scope.defer(() => peer.close());
    const primary = BpfLink.fromPin(primaryPin);
    scope.defer(() => primary.close());
    expect(peer.pinnedPath).toBe(peerPin);
    expect(peer.info()).toMatchObject({
      id: peerLinkId,
      attachPoint: "netkit-peer",
      attached: true,
      programId: firstPeerProg,
    });

    const counters = openMaps(second, counterObject.maps).nk_hook_counters; // the same pinned map
    const altBefore = counted(counters, Direction.EGRESS, HookSlot.ALTERNATE);
    expect(altBefore).toBe(0n);
    expect(counted(counters, Direction.EGRESS, HookSlot.PRIMARY)).toBeGreaterThanOrEqual(3n);

    const alt = second.program("nk_count_egress_alt");
    peer.update(alt);
    primary.update(second.program("nk_count_ingress_alt"));
    expect(peer.info()).toMatchObject({ id: peerLinkId, programId: alt.id, attached: true });
    expect(queryAttached(p.primary.index, "netkit-peer").programs).toEqual([
      { programId: alt.id, linkId: peerLinkId },
    ]);
    // an update that names the wrong current program is refused and changes nothing
    expect(() =>
      peer.update(second.program("nk_count_egress"), { expected: second.program("nk_count_egress") }),
    ).toThrow(/does not run the expected program/);

    await pingFromHost(p.podV4, 4);
    expect(counted(counters, Direction.EGRESS, HookSlot.ALTERNATE)).toBeGreaterThanOrEqual(4n);
    expect(counted(counters, Direction.INGRESS, HookSlot.ALTERNATE)).toBeGreaterThanOrEqual(4n);
  });

  it("unwires completely: deleting the device defuncts its links, removing the pins leaves nothing", async () => {
    const { p, pins } = await blackholePod();
    pins.ensure();
    const obj = BpfObject.load(COUNTER_OBJ, { pinRoot: pins.root });
    scope.defer(() => obj.close());
    const ids: number[] = [];
    for (const [kind, prog] of [
      ["peer", "nk_count_egress"],
      ["primary", "nk_count_ingress"],
    ] as const) {
      const l = BpfLink.attachNetkit(obj.program(prog), { primaryIfindex: p.primary.index, kind });
      l.pin(pins.path(`link-${kind}`));
      ids.push(l.id);
      l.close();
    }
    await pingFromHost(p.podV4, 2);
    expect(bpftoolLinkIds()).toEqual(expect.arrayContaining(ids));

    // unwire: the device first (its peer goes with it), then the pins
    expect(await p.host.deleteLink(p.primary.name)).toBe(true);
    expect(await p.host.getLink(p.primary.name)).toBeUndefined();
    expect((await p.pod.listLinks()).map((l) => l.name)).toEqual(["lo"]);
    const defunct = BpfLink.fromPin(pins.path("link-peer"));
    expect(defunct.info()).toMatchObject({ attached: false });
    // a link whose device is gone cannot be updated (ENOLINK): an agent re-creates it instead
    let updateErr: unknown;
    try {
      defunct.update(obj.program("nk_count_egress_alt"));
    } catch (e) {
      updateErr = e;
    }
    expect(updateErr).toMatchObject({ errnoCode: "ENOLINK" });
    defunct.close();

    obj.close();
    expect(pins.removeAll()).toBe(true);
    expect(existsSync(pins.root)).toBe(false);
    // the links died with their last pin and fd
    const left = bpftoolLinkIds();
    for (const id of ids) expect(left).not.toContain(id);
    expect((await p.host.listLinks()).filter((l) => l.kind === "netkit")).toEqual([]);
  });
});
