// 200 endpoints wired concurrently (per-id locking, one shared host netlink handle), a sample of
// them talking, then all unwired: nothing may remain in the maps, the host's routes, neighbours and
// devices, the pin and state dirs, IPAM, or this process's fd table.
import { randomInt } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { WiredEndpoint } from "../../src/datapath/endpoint-manager.js";
import { Scope } from "../helpers/scope.js";
import {
  addrKey,
  createHarness,
  createPods,
  hostLinkNames,
  hostRoutesAndNeighbours,
  ping,
  readDatapathMaps,
} from "./datapath-fixture.js";

const N = 200;
const CONCURRENCY = 16;

let scope: Scope;
beforeEach(() => {
  scope = new Scope();
});
afterEach(() => scope.close());

/** Runs tasks with at most `limit` in flight; results in task order. */
async function pool<T>(tasks: readonly (() => Promise<T>)[], limit: number): Promise<T[]> {
  const out: T[] = new Array(tasks.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < tasks.length) {
      const i = next++;
      out[i] = await tasks[i]!();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
  return out;
}

const fdCount = (): number => readdirSync("/proc/self/fd").length;
const ms = (t0: number): number => Math.round(performance.now() - t0);

describe("endpoint datapath at scale", () => {
  it(`wires and unwires ${N} endpoints concurrently without leaking anything`, {
    timeout: 120_000,
  }, async () => {
    const h = await createHarness(scope);
    const fdsBefore = fdCount();
    const timings: Record<string, number> = {};

    let t0 = performance.now();
    const pods = await createPods(scope, N, "s");
    timings.netns = ms(t0);
    const ids = pods.map((_, i) => h.newId(`s${i}`));

    // Wire all, CONCURRENCY at a time; every 20th id is also wired a second time concurrently,
    // which the per-id lock must turn into the same endpoint (not a second device or address).
    t0 = performance.now();
    const dupes: Promise<WiredEndpoint>[] = [];
    const eps = await pool(
      ids.map((id, i) => () => {
        const req = { id, netnsPath: pods[i]!.path };
        if (i % 20 === 0) dupes.push(h.pods.admit(req));
        return h.pods.admit(req);
      }),
      CONCURRENCY,
    );
    const dupResults = await Promise.all(dupes);
    timings.wire = ms(t0);
    for (const d of dupResults) expect(d).toEqual(eps.find((e) => e.id === d.id));

    // Everything is there exactly once.
    expect(h.mgr.list()).toHaveLength(N);
    expect(new Set(eps.map((e) => e.epNum)).size).toBe(N);
    expect(new Set(eps.map((e) => e.hostIfindex)).size).toBe(N);
    const addrs = eps.flatMap((e) => [e.addresses.ipv4!, e.addresses.ipv6!]);
    expect(new Set(addrs).size).toBe(2 * N);
    expect(h.ipam.usage().map((u) => u.used)).toEqual([N, N]);
    const maps = readDatapathMaps(h.bpffsDir);
    expect(maps.endpoints.size).toBe(2 * N);
    expect(maps.devices.size).toBe(N);
    for (const e of eps) {
      expect(maps.devices.get(e.hostIfindex)).toBe(e.epNum);
      expect(maps.endpoints.get(addrKey(e.addresses.ipv4!))?.ifindex).toBe(e.hostIfindex);
    }
    const links = await hostLinkNames();
    expect(eps.filter((e) => !links.has(e.hostIfName))).toEqual([]);

    // A few random pairs talk (both families), in parallel.
    t0 = performance.now();
    const pairs = Array.from({ length: 6 }, () => {
      const a = randomInt(N);
      let b = randomInt(N);
      if (b === a) b = (a + 1) % N;
      return [a, b] as const;
    });
    const pingOk = await Promise.all(
      pairs.flatMap(([a, b]) => [
        ping(pods[a]!, eps[b]!.addresses.ipv4!, 1),
        ping(pods[b]!, eps[a]!.addresses.ipv6!, 1),
      ]),
    );
    timings.ping = ms(t0);
    expect(pingOk.every(Boolean), `pings between ${JSON.stringify(pairs)}: ${pingOk}`).toBe(true);

    // Unwire all, again with some concurrent duplicates: exactly one of each pair reports the removal.
    t0 = performance.now();
    const dupUnwires: Promise<boolean>[] = [];
    const removed = await pool(
      ids.map((id, i) => () => {
        if (i % 20 === 0) dupUnwires.push(h.pods.release(id));
        return h.pods.release(id);
      }),
      CONCURRENCY,
    );
    const dupRemoved = await Promise.all(dupUnwires);
    timings.unwire = ms(t0);
    // The unwires answered once their endpoints were off the datapath; their pairs go after that.
    await Promise.all(ids.map((id) => h.mgr.settled(id)));
    timings.removed = ms(t0);
    const dupIdx = ids.flatMap((_, i) => (i % 20 === 0 ? [i] : []));
    dupIdx.forEach((i, k) => {
      expect([removed[i], dupRemoved[k]].filter(Boolean), `unwire results for ${ids[i]}`).toHaveLength(1);
    });
    expect(removed.filter((r, i) => !r && !dupIdx.includes(i))).toEqual([]);

    // Nothing left anywhere.
    const after = readDatapathMaps(h.bpffsDir);
    expect(after.endpoints.size, "nk_endpoints entries").toBe(0);
    expect(after.devices.size, "nk_devices entries").toBe(0);
    expect(after.counters, "nk_counters entries").toEqual([]);
    const keys = new Set(addrs.map(addrKey));
    const devs = new Set(eps.map((e) => e.hostIfName));
    const matches = (r: { dst: string; dev?: string }): boolean => {
      if (r.dev !== undefined && devs.has(r.dev)) return true;
      try {
        return keys.has(addrKey(r.dst));
      } catch {
        return false;
      }
    };
    const { routes, neighbours } = await hostRoutesAndNeighbours();
    expect(routes.filter(matches), "host routes").toEqual([]);
    expect(neighbours.filter(matches), "host neighbours").toEqual([]);
    const linksAfter = await hostLinkNames();
    expect(
      [...devs].filter((d) => linksAfter.has(d)),
      "host devices",
    ).toEqual([]);
    const epPins = join(h.bpffsDir, "endpoints");
    expect(existsSync(epPins) ? readdirSync(epPins) : [], "endpoint pins").toEqual([]);
    expect(
      readdirSync(join(h.stateDir, "endpoints")).filter((f) => f.endsWith(".json")),
      "endpoint records",
    ).toEqual([]);
    expect(h.mgr.list()).toEqual([]);
    expect(h.ipam.usage().map((u) => u.used)).toEqual([0, 0]);
    expect(h.ipam.list()).toEqual([]);
    const fdsAfter = fdCount();
    expect(Math.abs(fdsAfter - fdsBefore), `fds before ${fdsBefore}, after ${fdsAfter}`).toBeLessThanOrEqual(
      2,
    );

    console.log(
      `datapath-scale: ${N} endpoints, ms: ${JSON.stringify(timings)}; fds ${fdsBefore} -> ${fdsAfter}`,
    );
  });
});
