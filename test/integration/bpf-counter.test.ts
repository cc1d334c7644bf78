// Counter programs on a real veth: exact packet and byte counts for a known amount of traffic.
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { BpfLink, BpfObject, openMaps, queryAttached, sumCounters } from "../../src/bpf/index.js";
import { Direction, HOOK_COUNTERS_MAP, HookSlot, hookCounter, hookKey } from "../helpers/bpf-test-structs.js";
import { counterObject } from "../helpers/gen/counter.skel.js";
import { Scope } from "../helpers/scope.js";
import {
  COUNTER_OBJ,
  createVethPair,
  PING_FRAME_BYTES,
  pingFromPod,
  requireBuilt,
  scopedPinDir,
} from "./bpf-fixture.js";

let scope: Scope;

beforeAll(() => requireBuilt());

afterEach(async () => {
  await scope.close();
});

describe("counter programs on tcx", () => {
  it("counts exactly the ping frames in both directions", async () => {
    scope = new Scope();
    const pins = scopedPinDir(scope, "counter");
    const pair = await createVethPair(scope);

    const obj = BpfObject.load(COUNTER_OBJ, { pinRoot: pins.root });
    scope.defer(() => obj.close());
    expect(obj.programs().map((p) => [p.name, p.section])).toEqual(
      expect.arrayContaining([
        ["nk_count_ingress", "tcx/ingress"],
        ["nk_count_egress", "tcx/egress"],
        ["nk_count_ingress_alt", "tcx/ingress"],
      ]),
    );
    expect(obj.maps().find((m) => m.name === HOOK_COUNTERS_MAP)).toMatchObject({
      keySize: hookKey.size,
      valueSize: hookCounter.size,
      pinned: true,
      pinPath: pins.path(HOOK_COUNTERS_MAP),
    });

    const ingress = BpfLink.attachTcx(obj.program("nk_count_ingress"), {
      ifindex: pair.hostIfindex,
      direction: "ingress",
    });
    scope.defer(() => ingress.close());
    const egress = BpfLink.attachTcx(obj.program("nk_count_egress"), {
      ifindex: pair.hostIfindex,
      direction: "egress",
    });
    scope.defer(() => egress.close());

    expect(ingress.info()).toMatchObject({
      typeName: "tcx",
      ifindex: pair.hostIfindex,
      attachPoint: "tcx-ingress",
      attached: true,
      programId: obj.program("nk_count_ingress").id,
    });
    expect(queryAttached(pair.hostIfindex, "tcx-ingress").programs).toEqual([
      { programId: obj.program("nk_count_ingress").id, linkId: ingress.id },
    ]);
    expect(queryAttached(pair.hostIfindex, "tcx-egress").programs).toEqual([
      { programId: obj.program("nk_count_egress").id, linkId: egress.id },
    ]);

    await pingFromPod(pair, 5);

    const counters = openMaps(obj, counterObject.maps).nk_hook_counters;
    const inKey = { ifindex: pair.hostIfindex, direction: Direction.INGRESS, slot: HookSlot.PRIMARY };
    const outKey = { ifindex: pair.hostIfindex, direction: Direction.EGRESS, slot: HookSlot.PRIMARY };
    const bytes = BigInt(5 * PING_FRAME_BYTES);
    expect(sumCounters(counters.lookup(inKey) ?? [])).toEqual({ packets: 5n, bytes });
    expect(sumCounters(counters.lookup(outKey) ?? [])).toEqual({ packets: 5n, bytes });
    // nothing else was counted: the map holds exactly these two keys
    expect([...counters.keys()].sort((a, b) => a.direction - b.direction)).toEqual([inKey, outKey]);

    // closing the only fd of an unpinned link detaches it
    ingress.close();
    egress.close();
    expect(queryAttached(pair.hostIfindex, "tcx-ingress").programs).toEqual([]);
    expect(queryAttached(pair.hostIfindex, "tcx-egress").programs).toEqual([]);
  });

  it("reuses a pinned map when the object is loaded again", async () => {
    scope = new Scope();
    const pins = scopedPinDir(scope, "reuse");
    const first = BpfObject.load(COUNTER_OBJ, { pinRoot: pins.root });
    scope.defer(() => first.close());
    const m1 = openMaps(first, counterObject.maps).nk_hook_counters;
    const key = { ifindex: 1, direction: Direction.INGRESS, slot: HookSlot.PRIMARY };
    m1.update(key, m1.fill({ packets: 7n, bytes: 700n }));
    first.close();

    expect(pins.list()).toEqual([HOOK_COUNTERS_MAP]);
    const second = BpfObject.load(COUNTER_OBJ, { pinRoot: pins.root });
    scope.defer(() => second.close());
    const m2 = openMaps(second, counterObject.maps).nk_hook_counters;
    expect(m2.info.id).toBe(m1.info.id);
    expect(sumCounters(m2.lookup(key) ?? [])).toEqual({
      packets: 7n * BigInt(m2.cpus),
      bytes: 700n * BigInt(m2.cpus),
    });
  });
});
