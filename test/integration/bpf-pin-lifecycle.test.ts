// A link pinned by a process that has exited keeps counting; a second process reopens it from the
// pin, swaps its program with BPF_LINK_UPDATE, detaches it and removes the pin.
import { existsSync } from "node:fs";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { BpfLink, BpfObject, openMaps, pinnedMaps, queryAttached, sumCounters } from "../../src/bpf/index.js";
import { BpfError } from "../../src/errors.js";
import { Direction, HOOK_COUNTERS_MAP, HookSlot } from "../helpers/bpf-test-structs.js";
import { counterObject } from "../helpers/gen/counter.skel.js";
import { Scope } from "../helpers/scope.js";
import { run } from "../helpers/sys.js";
import {
  ADDON,
  COUNTER_OBJ,
  createVethPair,
  PIN_CHILD,
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

describe("pinned tcx link across processes", () => {
  it("survives its creator, is updated to another program, detached and unpinned", async () => {
    scope = new Scope();
    const pins = scopedPinDir(scope, "pinlink").ensure();
    const pair = await createVethPair(scope);
    const linkPin = pins.path("link_ingress");

    const { stdout } = await run(process.execPath, [
      PIN_CHILD,
      ADDON,
      COUNTER_OBJ,
      pins.root,
      String(pair.hostIfindex),
      linkPin,
    ]);
    const child = JSON.parse(stdout) as { linkId: number; progId: number };
    expect(pins.list()).toEqual(["link_ingress", HOOK_COUNTERS_MAP].sort());

    // the creator is gone; the pin alone keeps the link attached
    expect(queryAttached(pair.hostIfindex, "tcx-ingress").programs).toEqual([
      { programId: child.progId, linkId: child.linkId },
    ]);
    const link = BpfLink.fromPin(linkPin);
    scope.defer(() => link.close());
    expect(link.pinnedPath).toBe(linkPin);
    expect(link.info()).toMatchObject({
      id: child.linkId,
      programId: child.progId,
      ifindex: pair.hostIfindex,
      attachPoint: "tcx-ingress",
      attached: true,
    });

    const counters = pinnedMaps(pins.root, counterObject).nk_hook_counters;
    scope.defer(() => counters.close());
    const primary = { ifindex: pair.hostIfindex, direction: Direction.INGRESS, slot: HookSlot.PRIMARY };
    const alternate = { ...primary, slot: HookSlot.ALTERNATE };
    await pingFromPod(pair, 3);
    const three = { packets: 3n, bytes: BigInt(3 * PING_FRAME_BYTES) };
    expect(sumCounters(counters.lookup(primary) ?? [])).toEqual(three);
    expect(counters.lookup(alternate)).toBeUndefined();

    // a new "agent" loads the same object (reusing the pinned map) and swaps the program in place
    const obj = BpfObject.load(COUNTER_OBJ, { pinRoot: pins.root });
    scope.defer(() => obj.close());
    expect(openMaps(obj, counterObject.maps).nk_hook_counters.info.id).toBe(counters.info.id);
    const alt = obj.program("nk_count_ingress_alt");
    // an update conditioned on the wrong current program is refused and changes nothing
    expect(() => link.update(alt, { expected: obj.program("nk_count_ingress") })).toThrow(BpfError);
    expect(link.info().programId).toBe(child.progId);

    link.update(alt);
    expect(link.info()).toMatchObject({ id: child.linkId, programId: alt.id, attached: true });
    const q = queryAttached(pair.hostIfindex, "tcx-ingress");
    expect(q.programs).toEqual([{ programId: alt.id, linkId: child.linkId }]);

    await pingFromPod(pair, 4);
    expect(sumCounters(counters.lookup(primary) ?? [])).toEqual(three);
    expect(sumCounters(counters.lookup(alternate) ?? [])).toEqual({
      packets: 4n,
      bytes: BigInt(4 * PING_FRAME_BYTES),
    });

    // detach: the link object stays (pinned) but is no longer on the device
    link.detach();
    expect(queryAttached(pair.hostIfindex, "tcx-ingress").programs).toEqual([]);
    expect(link.info().attached).toBe(false);
    await pingFromPod(pair, 2);
    expect(sumCounters(counters.lookup(alternate) ?? []).packets).toBe(4n);

    expect(link.unpin()).toBe(true);
    expect(existsSync(linkPin)).toBe(false);
    link.close();
    expect(pins.list()).toEqual([HOOK_COUNTERS_MAP]);
  });
});
