// A map pinned by an older build with another shape: a recreatable one (counters) is made anew at
// load, any other fails the load with an error that names the pin, what differs and the fix.
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { BpfObject } from "../../src/bpf/index.js";
import { BpfMap, pinnedMapInfo } from "../../src/bpf/map.js";
import { BpfLoadError } from "../../src/errors.js";
import { HOOK_COUNTERS_MAP, hookCounter } from "../helpers/bpf-test-structs.js";
import { Scope } from "../helpers/scope.js";
import { COUNTER_OBJ, requireBuilt, scopedPinDir } from "./bpf-fixture.js";

let scope: Scope;
beforeAll(() => requireBuilt());
afterEach(async () => {
  await scope.close();
});

function pinOldShape(path: string): void {
  const old = BpfMap.createArray("nk_old", hookCounter, 7);
  try {
    old.pin(path);
  } finally {
    old.close();
  }
}

describe("pinned maps of another shape", () => {
  it("refuses to load over one that is not recreatable, naming it, and leaves it", () => {
    scope = new Scope();
    const pins = scopedPinDir(scope, "compat").ensure();
    const pin = pins.path(HOOK_COUNTERS_MAP);
    pinOldShape(pin);
    let error: unknown;
    try {
      BpfObject.load(COUNTER_OBJ, { pinRoot: pins.root }).close();
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(BpfLoadError);
    const msg = (error as Error).message;
    expect(msg).toContain(pin);
    expect(msg).toMatch(/type array pinned, percpu_hash wanted/);
    expect(msg).toMatch(/max entries 7 pinned/);
    expect(msg).toMatch(/remove the pin/);
    expect(pinnedMapInfo(pin).typeName).toBe("array");
  });

  it("makes a recreatable one anew and loads", () => {
    scope = new Scope();
    const pins = scopedPinDir(scope, "compat").ensure();
    const pin = pins.path(HOOK_COUNTERS_MAP);
    pinOldShape(pin);
    const obj = BpfObject.load(COUNTER_OBJ, { pinRoot: pins.root, recreatable: [HOOK_COUNTERS_MAP] });
    obj.close();
    const info = pinnedMapInfo(pin);
    expect(info.typeName).toBe("percpu_hash");
    // A pin of the right shape is reused as it is (same map id on the next load).
    const again = BpfObject.load(COUNTER_OBJ, { pinRoot: pins.root, recreatable: [HOOK_COUNTERS_MAP] });
    again.close();
    expect(pinnedMapInfo(pin).id).toBe(info.id);
  });
});
