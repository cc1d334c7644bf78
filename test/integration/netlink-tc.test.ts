// Legacy tc through src/netlink/tc.ts on a real veth: the clsact qdisc (idempotent), cls_bpf filters
// in direct-action mode that really run (the counter programs count the ping frames), an atomic
// replace that swaps the program in place, refusals, and removal.
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { BpfObject, openMaps, sumCounters } from "../../src/bpf/index.js";
import { NetlinkError } from "../../src/errors.js";
import { Rtnl } from "../../src/netlink/index.js";
import { Direction, HookSlot } from "../helpers/bpf-test-structs.js";
import { counterObject } from "../helpers/gen/counter.skel.js";
import { Scope } from "../helpers/scope.js";
import { run } from "../helpers/sys.js";
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
afterEach(() => scope.close());

describe("tc clsact + cls_bpf", () => {
  it("attaches direct-action filters that run, replaces one in place, and removes them", async () => {
    scope = new Scope();
    const pins = scopedPinDir(scope, "tc");
    const pair = await createVethPair(scope);
    const obj = BpfObject.load(COUNTER_OBJ, { pinRoot: pins.root });
    scope.defer(() => obj.close());
    const host = await Rtnl.host();
    scope.defer(() => host.close());
    const ifindex = pair.hostIfindex;
    const filter = (direction: "ingress" | "egress", name: string, replace = false) =>
      host.attachTcBpf({
        ifindex,
        direction,
        progFd: obj.program(name).fd,
        name,
        priority: 1,
        handle: 1,
        replace,
      });

    expect(await host.listTcBpf(ifindex, "ingress")).toEqual([]); // no clsact yet
    await host.ensureClsact(ifindex);
    await host.ensureClsact(ifindex); // already there: fine
    await filter("ingress", "nk_count_ingress");
    await filter("egress", "nk_count_egress");
    expect(await host.listTcBpf(ifindex, "ingress")).toEqual([
      {
        direction: "ingress",
        priority: 1,
        handle: 1,
        programId: obj.program("nk_count_ingress").id,
        name: "nk_count_ingress",
        directAction: true,
      },
    ]);
    // The same priority and handle again without replace is refused.
    await expect(filter("ingress", "nk_count_ingress")).rejects.toThrow(NetlinkError);

    await pingFromPod(pair, 5);
    const counters = openMaps(obj, counterObject.maps).nk_hook_counters;
    const key = (direction: number, slot: number) => ({ ifindex, direction, slot });
    const bytes = BigInt(5 * PING_FRAME_BYTES);
    expect(sumCounters(counters.lookup(key(Direction.INGRESS, HookSlot.PRIMARY)) ?? [])).toEqual({
      packets: 5n,
      bytes,
    });
    expect(sumCounters(counters.lookup(key(Direction.EGRESS, HookSlot.PRIMARY)) ?? [])).toEqual({
      packets: 5n,
      bytes,
    });

    // Replace: the other program runs under the same filter from now on.
    await filter("ingress", "nk_count_ingress_alt", true);
    const [f] = await host.listTcBpf(ifindex, "ingress");
    expect(f).toMatchObject({ priority: 1, handle: 1, programId: obj.program("nk_count_ingress_alt").id });
    await pingFromPod(pair, 3);
    expect(sumCounters(counters.lookup(key(Direction.INGRESS, HookSlot.ALTERNATE)) ?? []).packets).toBe(3n);
    expect(sumCounters(counters.lookup(key(Direction.INGRESS, HookSlot.PRIMARY)) ?? []).packets).toBe(5n);

    expect(await host.detachTcBpf({ ifindex, direction: "ingress", priority: 1, handle: 1 })).toBe(true);
    expect(await host.detachTcBpf({ ifindex, direction: "ingress", priority: 1, handle: 1 })).toBe(false);
    expect(await host.listTcBpf(ifindex, "ingress")).toEqual([]);
    expect(await host.listTcBpf(ifindex, "egress")).toHaveLength(1);
    // What `tc` sees agrees.
    const shown = (await run("tc", ["filter", "show", "dev", pair.hostIf, "egress"])).stdout;
    expect(shown).toMatch(/bpf .*nk_count_egress.* direct-action/);
  });

  it("names a device that does not exist", async () => {
    scope = new Scope();
    const host = await Rtnl.host();
    scope.defer(() => host.close());
    const gone = 0x7fff_fff0;
    await expect(host.ensureClsact(gone)).rejects.toThrow(new RegExp(`ifindex ${gone}.*ENODEV`));
  });
});
