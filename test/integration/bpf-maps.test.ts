// Map API against real kernel maps: element ops and update modes, iteration, batch ops on a hash
// map, per-CPU values, array maps, address codecs, pin and reopen.
import { readdirSync } from "node:fs";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  BpfMap,
  BpfObject,
  ipv4,
  ipv6,
  PerCpuMap,
  PinDir,
  sumCounters,
  u32,
  u64,
} from "../../src/bpf/index.js";
import { AlreadyExistsError, BpfError, InvalidArgumentError, NotFoundError } from "../../src/errors.js";
import { hookCounter, hookKey } from "../helpers/bpf-test-structs.js";
import { uniqueBpffsDir } from "../helpers/names.js";
import { Scope } from "../helpers/scope.js";
import { MAPS_OBJ, requireBuilt } from "./bpf-fixture.js";

let scope: Scope;
let obj: BpfObject;
let pins: PinDir;

beforeAll(() => requireBuilt());

function setup(): void {
  scope = new Scope();
  pins = new PinDir(uniqueBpffsDir("maps"));
  scope.defer(() => pins.removeAll());
  obj = BpfObject.load(MAPS_OBJ);
  scope.defer(() => obj.close());
}

afterEach(async () => {
  await scope.close();
});

describe("hash map", () => {
  it("lookup/update/delete with update modes", () => {
    setup();
    const m = obj.map("nk_test_hash", u32, u64);
    expect(m.info).toMatchObject({
      typeName: "hash",
      keySize: 4,
      valueSize: 8,
      maxEntries: 1024,
      percpu: false,
    });
    expect(m.lookup(1)).toBeUndefined();
    m.update(1, 10n);
    expect(m.lookup(1)).toBe(10n);
    m.update(1, 11n, "exist");
    expect(m.lookup(1)).toBe(11n);

    const dup = (() => {
      try {
        m.update(1, 12n, "noexist");
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(dup).toBeInstanceOf(AlreadyExistsError);
    expect((dup as Error).message).toMatch(/key already exists/);
    expect(m.lookup(1)).toBe(11n);
    expect(() => m.update(2, 1n, "exist")).toThrow(NotFoundError);
    m.update(2, 20n, "noexist");

    expect(m.delete(2)).toBe(true);
    expect(m.delete(2)).toBe(false);
    expect([...m.entries()]).toEqual([[1, 11n]]);
  });

  it("iterates and batch-updates, -looks-up and -deletes", () => {
    setup();
    const m = obj.map("nk_test_hash", u32, u64);
    const entries: [number, bigint][] = Array.from({ length: 300 }, (_, i) => [i * 7 + 1, BigInt(i) * 1000n]);
    expect(m.updateBatch(entries)).toBe(300);
    const byKey = (a: [number, bigint], b: [number, bigint]) => a[0] - b[0];
    expect([...m.entries()].sort(byKey)).toEqual(entries);
    expect([...m.keys()].length).toBe(300);
    // small batches force many cursor round trips (and ENOSPC growth on crowded buckets)
    expect(m.lookupBatch({ batchSize: 3 }).sort(byKey)).toEqual(entries);

    const gone = entries.slice(0, 100).map(([k]) => k);
    expect(m.deleteBatch(gone)).toBe(100);
    expect(m.lookup(gone[0] ?? -1)).toBeUndefined();
    expect(() => m.deleteBatch([gone[0] ?? 0])).toThrow(NotFoundError);

    const drained = m.lookupAndDeleteBatch({ batchSize: 64 });
    expect(drained.sort(byKey)).toEqual(entries.slice(100));
    expect([...m.keys()]).toEqual([]);
  });

  it("rejects codecs that do not fit the map", () => {
    setup();
    expect(() => obj.map("nk_test_hash", u64, u64)).toThrow(InvalidArgumentError);
    expect(() => obj.map("nk_test_hash", u32, u32)).toThrow(
      /value codec is 4 bytes but the map's values are 8/,
    );
    expect(() => obj.map("nk_test_percpu", hookKey, hookCounter)).toThrow(/per-CPU/);
    expect(() => obj.perCpuMap("nk_test_hash", u32, u64)).toThrow(/not per-CPU/);
    expect(() => obj.map("no_such_map", u32, u64)).toThrow(NotFoundError);
  });

  it("address codecs: IPv6 key, IPv4 value", () => {
    setup();
    const m = obj.map("nk_test_addr", ipv6, ipv4);
    m.update("fd47::1", "10.47.0.1");
    m.update("2001:db8::ffff:0:1", "192.0.2.255");
    expect(m.lookup("fd47:0:0:0:0:0:0:1")).toBe("10.47.0.1");
    expect(new Map(m.entries())).toEqual(
      new Map([
        ["fd47::1", "10.47.0.1"],
        ["2001:db8::ffff:0:1", "192.0.2.255"],
      ]),
    );
  });
});

describe("per-CPU map", () => {
  it("reads and writes one value per possible CPU, single and batched", () => {
    setup();
    const m = obj.perCpuMap("nk_test_percpu", hookKey, hookCounter);
    expect(m.info.percpu).toBe(true);
    expect(m.cpus).toBeGreaterThanOrEqual(1);
    expect(m.info.valueLen).toBe(16 * m.cpus);
    const key = { ifindex: 7, direction: 1, slot: 0 };
    const values = Array.from({ length: m.cpus }, (_, i) => ({
      packets: BigInt(i + 1),
      bytes: BigInt((i + 1) * 100),
    }));
    m.update(key, values);
    expect(m.lookup(key)).toEqual(values);
    const n = BigInt(m.cpus);
    expect(sumCounters(m.lookup(key) ?? [])).toEqual({
      packets: (n * (n + 1n)) / 2n,
      bytes: (n * (n + 1n) * 100n) / 2n,
    });
    expect(() => m.update(key, values.slice(1))).toThrow(InvalidArgumentError);
    expect(() => m.update(key, values, "noexist")).toThrow(AlreadyExistsError);

    const batch = Array.from({ length: 20 }, (_, i) => [
      { ifindex: 100 + i, direction: 0, slot: 1 },
      m.fill({ packets: BigInt(i), bytes: 1n }),
    ]) as [typeof key, typeof values][];
    expect(m.updateBatch(batch)).toBe(20);
    const all = m.lookupBatch({ batchSize: 4 });
    expect(all.length).toBe(21);
    expect(all.find(([k]) => k.ifindex === 119)?.[1]).toEqual(m.fill({ packets: 19n, bytes: 1n }));
    expect(m.deleteBatch(batch.map(([k]) => k))).toBe(20);
    expect([...m.keys()]).toEqual([key]);
  });
});

describe("array map", () => {
  it("has every index, refuses deletes and NOEXIST", () => {
    setup();
    const m = obj.map("nk_test_array", u32, u32);
    expect([...m.keys()]).toEqual(Array.from({ length: 16 }, (_, i) => i));
    m.update(3, 33);
    expect(m.lookup(3)).toBe(33);
    expect(m.lookup(16)).toBeUndefined();
    expect(() => m.delete(3)).toThrow(BpfError);
    expect(() => m.update(4, 1, "noexist")).toThrow(AlreadyExistsError);
    expect(m.lookupBatch().length).toBe(16);
  });
});

describe("pinned maps", () => {
  it("pins a map and reopens it from another handle", () => {
    setup();
    pins.ensure();
    const m = obj.map("nk_test_hash", u32, u64);
    m.update(5, 55n);
    m.pin(pins.path("hash"));
    expect(() => m.pin(pins.path("hash"))).toThrow(AlreadyExistsError);
    obj.close();
    expect(m.closed).toBe(true);
    const again = BpfMap.fromPin(pins.path("hash"), u32, u64);
    scope.defer(() => again.close());
    expect(again.lookup(5)).toBe(55n);
    expect(() => PerCpuMap.fromPin(pins.path("hash"), u32, u64)).toThrow(/not per-CPU/);
    expect(pins.remove("hash")).toBe(true);
    expect(pins.list()).toEqual([]);
    // the map lives on through the open handle
    expect(again.lookup(5)).toBe(55n);
  });
});

describe("fd hygiene", () => {
  it("closing objects, maps, programs and links returns every fd", () => {
    scope = new Scope();
    const fds = () => readdirSync("/proc/self/fd").length;
    const before = fds();
    for (let i = 0; i < 5; i++) {
      const o = BpfObject.load(MAPS_OBJ);
      o.map("nk_test_hash", u32, u64).update(1, 1n);
      o.perCpuMap("nk_test_percpu", hookKey, hookCounter);
      o.close();
    }
    expect(fds()).toBe(before);
  });
});
