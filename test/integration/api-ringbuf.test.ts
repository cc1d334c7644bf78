// The addon's ring buffer consumer (native/src/bpf_ringbuf.c) on the real datapath: drop events
// arrive decoded, and opening/closing the consumer repeatedly while a flood of drops flows neither
// crashes nor leaks threads or fds.
import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { datapathEvent } from "../../src/bpf/datapath.js";
import { datapathObject } from "../../src/bpf/gen/datapath.skel.js";
import { openPinned } from "../../src/bpf/handle.js";
import { RingBuffer } from "../../src/bpf/ringbuf.js";
import { Reason } from "../../src/datapath/reasons.js";
import { bpfAddon } from "../../src/native/bpf.js";
import { ringbufAddon, splitRecords } from "../../src/native/ringbuf.js";
import { waitFor } from "../helpers/process.js";
import { Scope } from "../helpers/scope.js";
import {
  addSpoofedAddress,
  createHarness,
  type Harness,
  pingSpoofed,
  wirePodPair,
} from "./datapath-fixture.js";

let scope: Scope;
let h: Harness;
beforeEach(async () => {
  scope = new Scope();
  h = await createHarness(scope);
});
afterEach(() => scope.close());

const threads = () => readdirSync("/proc/self/task").length;
const fds = () => readdirSync("/proc/self/fd").length;

describe("BPF ring buffer consumer", () => {
  it("delivers drop events and survives open/close cycles while events flow", async () => {
    const { podA, a, b } = await wirePodPair(scope, h);
    const spoofed = await addSpoofedAddress(podA, a, 251);

    const map = openPinned(join(h.bpffsDir, datapathObject.maps.nk_events.name), "map");
    scope.defer(() => bpfAddon().fdClose(map));
    const baseThreads = threads();
    const baseFds = fds();

    // 1) events arrive, decoded with the shared codec
    const got: ReturnType<typeof datapathEvent.decode>[] = [];
    const rb = ringbufAddon().ringbufOpen(map, (batch) => {
      for (const r of splitRecords(batch)) got.push(datapathEvent.decode(r));
    });
    await pingSpoofed(podA, spoofed, b.addresses.ipv4!);
    const end = Date.now() + 5000;
    while (got.length < 2 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    ringbufAddon().ringbufClose(rb);
    ringbufAddon().ringbufClose(rb); // idempotent
    const mine = got.filter((e) => e.ep_id === a.epNum);
    expect(mine.length).toBeGreaterThanOrEqual(2);
    expect(mine[0]).toMatchObject({
      type: 1,
      reason: Reason.DROP_SPOOFED_SOURCE,
      ifindex: a.hostIfindex,
      family: 4,
      protocol: 1,
    });
    expect([...mine[0]!.src.subarray(0, 4)].join(".")).toBe(spoofed);

    // 2) a flood of drops while consumers are opened and closed in a tight loop
    const flood = spawn(
      "ip",
      ["netns", "exec", podA.name, "ping", "-f", "-w", "4", "-q", "-I", spoofed, b.addresses.ipv4!],
      { stdio: "ignore" },
    );
    const floodDone = new Promise((r) => flood.once("exit", r));
    let batches = 0;
    for (let i = 0; i < 40; i++) {
      const h2 = ringbufAddon().ringbufOpen(map, () => {
        batches++;
      });
      await new Promise((r) => setTimeout(r, 20 + (i % 5) * 10));
      ringbufAddon().ringbufClose(h2);
    }
    // one left for the GC and the env cleanup hook to stop
    ringbufAddon().ringbufOpen(map, () => undefined);
    await floodDone;
    expect(batches).toBeGreaterThan(0);
    // closed consumers leave nothing behind (the unclosed one holds one thread + 3 fds)
    expect(threads()).toBeLessThanOrEqual(baseThreads + 1);
    expect(fds()).toBeLessThanOrEqual(baseFds + 3);
  });

  it("rejects a map that is not a ring buffer", () => {
    const m = openPinned(join(h.bpffsDir, "nk_devices"), "map");
    try {
      expect(() => ringbufAddon().ringbufOpen(m, () => undefined)).toThrow(/not a BPF_MAP_TYPE_RINGBUF/);
    } finally {
      bpfAddon().fdClose(m);
    }
  });

  it("RingBuffer: records split and decoded through the typed wrapper; refuses a non-ring map", async () => {
    const { podA, a, b } = await wirePodPair(scope, h);
    const spoofed = await addSpoofedAddress(podA, a, 252);
    const got: ReturnType<typeof datapathEvent.decode>[] = [];
    const ring = RingBuffer.fromPin(join(h.bpffsDir, datapathObject.maps.nk_events.name), (records) => {
      for (const r of records) got.push(datapathEvent.decode(r));
    });
    scope.defer(() => ring.close());
    await pingSpoofed(podA, spoofed, b.addresses.ipv4!);
    const mine = () => got.filter((e) => e.ep_id === a.epNum && e.reason === Reason.DROP_SPOOFED_SOURCE);
    await waitFor(() => mine().length >= 2, "two drop events through RingBuffer");
    ring.close();
    ring.close(); // idempotent
    expect(ring.closed).toBe(true);
    expect(mine().length).toBeGreaterThanOrEqual(2);

    const before = fds();
    expect(() => RingBuffer.fromPin(join(h.bpffsDir, "nk_devices"), () => undefined)).toThrow(
      /not a BPF_MAP_TYPE_RINGBUF/,
    );
    expect(fds()).toBe(before); // the map fd opened for it is closed again
  });
});
