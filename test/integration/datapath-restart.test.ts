// Restarts: pinned links and maps keep pods talking while no process owns the datapath, and a new
// EndpointManager adopts the endpoints by swapping programs under the same links (BPF_LINK_UPDATE)
// without dropping traffic. Start also repairs what a crash or a vanished netns left behind.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { EndpointFlags } from "../../src/bpf/datapath.js";
import { BpfLink, queryAttached } from "../../src/bpf/link.js";
import type { WiredEndpoint } from "../../src/datapath/endpoint-manager.js";
import { endpointKeyOf } from "../../src/datapath/endpoint-maps.js";
import { hostIfName } from "../../src/datapath/naming.js";
import { DatapathPrograms } from "../../src/datapath/programs.js";
import type { EndpointRecord } from "../../src/datapath/store.js";
import { Ipam, IpamOwner } from "../../src/ipam/ipam.js";
import { Rtnl, type TcBpfFilter } from "../../src/netlink/index.js";
import { writeFileAtomic } from "../../src/state/atomic-file.js";
import { endpointFilters } from "../helpers/nkitd.js";
import { Scope } from "../helpers/scope.js";
import { ipJson, run } from "../helpers/sys.js";
import {
  createHarness,
  createPod,
  createPods,
  expectNothingLeft,
  type Harness,
  hostLinkNames,
  ping,
  pinnedCounters,
  readDatapathMaps,
} from "./datapath-fixture.js";

const ROOT = join(import.meta.dirname, "..", "..");
const DIST = join(ROOT, "dist");
const CHILD = join(ROOT, "test", "fixtures", "datapath", "manager-child.mjs");

/**
 * The child runs the compiled code: every module it loads (the import graph of its entry point in
 * dist/) must exist and be at least as new as its source in src/.
 */
function requireDist(): void {
  const stale: string[] = [];
  const seen = new Set<string>();
  const visit = (js: string): void => {
    if (seen.has(js)) return;
    seen.add(js);
    if (!existsSync(js)) {
      throw new Error(`${js} is missing: run \`npm run build:ts\` before the datapath restart test`);
    }
    const ts = join(ROOT, "src", relative(DIST, js)).replace(/\.js$/, ".ts");
    if (existsSync(ts) && statSync(js).mtimeMs < statSync(ts).mtimeMs) stale.push(relative(ROOT, ts));
    for (const m of readFileSync(js, "utf8").matchAll(/(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+\.js)"/g)) {
      visit(join(dirname(js), m[1]!));
    }
  };
  visit(join(DIST, "pods", "network.js"));
  if (stale.length) {
    throw new Error(
      `dist/ is older than ${stale.join(", ")}: run \`npm run build:ts\` (the restart test runs dist/)`,
    );
  }
}

let scope: Scope;
beforeAll(() => requireDist());
beforeEach(() => {
  scope = new Scope();
});
afterEach(() => scope.close());

interface ChildOutput {
  pid: number;
  endpoints: WiredEndpoint[];
}

/** Starts the manager child on the harness's dirs (the harness's own manager must be stopped). */
async function startChild(h: Harness, pods: { id: string; netnsPath: string }[]) {
  const cfg = {
    bpffsDir: h.bpffsDir,
    stateDir: h.stateDir,
    ipamDir: h.ipamDir,
    podCIDRs: h.podCIDRs,
    pods,
  };
  const child: ChildProcess = spawn(process.execPath, [CHILD, DIST, JSON.stringify(cfg)], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) => {
    child.once("exit", (code, signal) => resolve(signal ?? code));
  });
  scope.defer(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await exited;
  });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const out = await new Promise<ChildOutput>((resolve, reject) => {
    let buf = "";
    const t = setTimeout(() => reject(new Error(`manager child did not report in 20 s: ${stderr}`)), 20_000);
    child.stdout?.on("data", (d: Buffer) => {
      buf += d.toString();
      const nl = buf.indexOf("\n");
      if (nl >= 0) {
        clearTimeout(t);
        resolve(JSON.parse(buf.slice(0, nl)) as ChildOutput);
      }
    });
    void exited.then((c) => {
      clearTimeout(t);
      reject(new Error(`manager child exited (${String(c)}) before reporting: ${stderr}`));
    });
  });
  const kill = async (): Promise<NodeJS.Signals | number | null> => {
    child.kill("SIGKILL");
    return exited;
  };
  return { out, kill };
}

interface EndpointPrograms {
  from: { programId: number; priority: number; handle: number };
  to: { programId: number; priority: number; handle: number };
}

/** The one cls_bpf filter on each side of a veth endpoint's host device (and no tcx program). */
async function endpointPrograms(ep: WiredEndpoint): Promise<EndpointPrograms> {
  const f = await endpointFilters(ep.hostIfindex);
  expect(f.from).toHaveLength(1);
  expect(f.to).toHaveLength(1);
  expect(queryAttached(ep.hostIfindex, "tcx-ingress").programs).toEqual([]);
  expect(queryAttached(ep.hostIfindex, "tcx-egress").programs).toEqual([]);
  const pick = (x: TcBpfFilter) => ({ programId: x.programId, priority: x.priority, handle: x.handle });
  return { from: pick(f.from[0]!), to: pick(f.to[0]!) };
}

/** ping -i 0.05 from inside ns; resolves with sent/received once it ends. */
function continuousPing(
  nsPath: string,
  addr: string,
  count: number,
): Promise<{ sent: number; received: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      "nsenter",
      [`--net=${nsPath}`, "--", "ping", "-n", "-q", "-i", "0.05", "-c", String(count), "-W", "1", addr],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    scope.defer(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.once("exit", () => {
      const m = /(\d+) packets transmitted, (\d+) received/.exec(out);
      if (!m) reject(new Error(`unexpected ping output: ${out}`));
      else resolve({ sent: Number(m[1]), received: Number(m[2]) });
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(
  what: string,
  cond: () => Promise<boolean> | boolean,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

describe("restart adoption", () => {
  it("keeps forwarding with no owner and adopts the pinned links without disruption", async () => {
    const h = await createHarness(scope);
    await h.stop();
    const [podA, podB] = await Promise.all([createPod(scope, "ra"), createPod(scope, "rb")]);
    const reqs = [
      { id: h.newId("ra"), netnsPath: podA.path },
      { id: h.newId("rb"), netnsPath: podB.path },
    ];
    const child = await startChild(h, reqs);
    const [a, b] = child.out.endpoints as [WiredEndpoint, WiredEndpoint];
    expect(a.id).toBe(reqs[0]!.id);
    expect(child.out.pid).not.toBe(process.pid);
    expect(await ping(podA, b.addresses.ipv4!)).toBe(true);
    const linksBefore = [await endpointPrograms(a), await endpointPrograms(b)];

    // The owner dies without cleaning up anything.
    expect(await child.kill()).toBe("SIGKILL");
    const c0 = pinnedCounters(h.bpffsDir, b.epNum).REDIRECT_PEER ?? 0n;
    expect(await ping(podA, b.addresses.ipv4!, 3)).toBe(true);
    expect(await ping(podB, a.addresses.ipv6!, 3)).toBe(true);
    const c1 = pinnedCounters(h.bpffsDir, b.epNum).REDIRECT_PEER ?? 0n;
    expect(c1 - c0).toBeGreaterThanOrEqual(6n); // 3 echo requests to B, 3 replies from B
    expect([await endpointPrograms(a), await endpointPrograms(b)]).toEqual(linksBefore);

    // A new manager adopts while continuous pings run in both directions.
    const COUNT = 100;
    const ab = continuousPing(podA.path, b.addresses.ipv4!, COUNT);
    const ba = continuousPing(podB.path, a.addresses.ipv6!, COUNT);
    await sleep(1500);
    const t0 = performance.now();
    const mgr = await h.restart();
    const adoptMs = Math.round(performance.now() - t0);
    const [rab, rba] = await Promise.all([ab, ba]);
    const lost = COUNT - rab.received + (COUNT - rba.received);
    console.log(
      `datapath-restart: adoption took ${adoptMs} ms; ping A->B v4 ${rab.received}/${rab.sent}, B->A v6 ${rba.received}/${rba.sent} received (lost ${lost} of ${2 * COUNT})`,
    );
    expect(rab.sent).toBe(COUNT);
    expect(rba.sent).toBe(COUNT);
    expect(lost, "packets lost across the adoption").toBeLessThanOrEqual(1);

    // Same endpoints, same filters, new programs, nothing attached twice.
    expect(
      mgr
        .list()
        .map((e) => e.id)
        .sort(),
    ).toEqual([a.id, b.id].sort());
    expect(mgr.get(a.id)).toEqual(a);
    const linksAfter = [await endpointPrograms(a), await endpointPrograms(b)];
    for (const [i] of [a, b].entries()) {
      const before = linksBefore[i]!;
      const after = linksAfter[i]!;
      expect([after.from.priority, after.from.handle]).toEqual([before.from.priority, before.from.handle]);
      expect([after.to.priority, after.to.handle]).toEqual([before.to.priority, before.to.handle]);
      expect(after.from.programId).not.toBe(before.from.programId);
      expect(after.to.programId).not.toBe(before.to.programId);
    }
    // Both endpoints share one program per hook after adoption, as after a fresh start.
    expect(linksAfter[0]!.from.programId).toBe(linksAfter[1]!.from.programId);
    // Counters kept counting through the pinned map and are visible to the new manager.
    expect(mgr.counters(b.id).REDIRECT_PEER?.packets ?? 0n).toBeGreaterThan(c1);
    expect(await ping(podA, b.addresses.ipv6!)).toBe(true);

    // And unwiring after adoption removes everything.
    expect(await h.pods.release(a.id)).toBe(true);
    expect(await h.pods.release(b.id)).toBe(true);
    await expectNothingLeft(h, a.id, [a.addresses.ipv4!, a.addresses.ipv6!]);
    await expectNothingLeft(h, b.id, [b.addresses.ipv4!, b.addresses.ipv6!]);
    expect(readDatapathMaps(h.bpffsDir).counters).toEqual([]);
    expect(h.ipam.usage().map((u) => u.used)).toEqual([0, 0]);
  });
});

describe("repair on start", () => {
  it('tears down a record stuck in phase "wiring" with its half-created device, map entries and pins', async () => {
    const h = await createHarness(scope);
    await h.stop();
    const pod = await createPod(scope, "stuck");
    const id = h.newId("stuck");
    const dev = hostIfName(id);

    // What a crash between creating the pair and finishing the wiring leaves: IPAM allocation,
    // record in phase "wiring", the veth pair, map entries, one pinned link.
    const ipam = Ipam.open({ podCIDRs: h.podCIDRs, stateDir: h.ipamDir });
    const alloc = ipam.allocate(id, { owner: IpamOwner.API });
    const addrs = [alloc.ipv4!, alloc.ipv6!];
    await run("ip", ["link", "add", dev, "type", "veth", "peer", "name", "eth0", "netns", pod.name]);
    scope.defer(() => run("ip", ["link", "del", dev]).catch(() => undefined));
    const host = await Rtnl.host();
    const link = await host.requireLink(dev).finally(() => host.close());
    const epNum = 7;
    const rec: EndpointRecord = {
      id,
      epNum,
      phase: "wiring",
      mode: "veth",
      netnsPath: pod.path,
      podIfName: "eth0",
      hostIfName: dev,
      hostIfindex: link.index,
      addresses: { ipv4: alloc.ipv4!, ipv6: alloc.ipv6! },
      labels: {},
      createdAt: new Date().toISOString(),
    };
    mkdirSync(join(h.stateDir, "endpoints"), { recursive: true });
    writeFileAtomic(
      join(h.stateDir, "endpoints", `${dev}.json`),
      `${JSON.stringify({ version: 1, ...rec })}\n`,
    );
    const progs = DatapathPrograms.load(h.bpffsDir);
    try {
      progs.devices.update(link.index, epNum);
      for (const a of addrs) {
        progs.endpoints.update(endpointKeyOf(a), {
          ifindex: link.index,
          ep_id: epNum,
          flags: EndpointFlags.L2,
          mac: Buffer.alloc(6),
          host_mac: Buffer.alloc(6),
        });
      }
      progs.counters.update({ ep_id: epNum, reason: 1 }, progs.counters.fill({ packets: 1n, bytes: 1n }));
      mkdirSync(join(h.bpffsDir, "endpoints", dev), { recursive: true });
      const l = BpfLink.attachTcx(progs.fromContainer, { ifindex: link.index, direction: "ingress" });
      l.pin(join(h.bpffsDir, "endpoints", dev, "from-container"));
      l.close();
    } finally {
      progs.close();
    }
    expect(readDatapathMaps(h.bpffsDir).devices.get(link.index)).toBe(epNum);

    const mgr = await h.restart();
    expect(mgr.list()).toEqual([]);
    await expectNothingLeft(h, id, addrs);
    const maps = readDatapathMaps(h.bpffsDir);
    expect([maps.endpoints.size, maps.devices.size, maps.counters.length]).toEqual([0, 0, 0]);
    expect(h.ipam.usage().map((u) => u.used)).toEqual([0, 0]);
    expect(await ipJson<unknown[]>(["link", "show"], pod.name)).toHaveLength(1); // lo only

    // The id wires cleanly afterwards.
    const ep = await h.pods.admit({ id, netnsPath: pod.path });
    expect(ep.hostIfName).toBe(dev);
    expect(await h.pods.release(id)).toBe(true);
  });

  it("adopts endpoints an earlier build wired with pinned tcx links: filters take over, then the links go", async () => {
    const h = await createHarness(scope);
    const [podA, podB] = await createPods(scope, 2, "upg");
    const a = await h.pods.admit({ id: h.newId("upa"), netnsPath: podA!.path });
    const b = await h.pods.admit({ id: h.newId("upb"), netnsPath: podB!.path });
    await h.stop();
    // What an earlier build left: tcx links pinned under endpoints/<dev>/, no tc filters.
    const progs = DatapathPrograms.load(h.bpffsDir);
    try {
      for (const ep of [a, b]) {
        const dir = join(h.bpffsDir, "endpoints", ep.hostIfName);
        mkdirSync(dir, { recursive: true });
        for (const [direction, prog, name] of [
          ["ingress", progs.fromContainer, "from-container"],
          ["egress", progs.toContainer, "to-container"],
        ] as const) {
          const l = BpfLink.attachTcx(prog, { ifindex: ep.hostIfindex, direction });
          l.pin(join(dir, name));
          l.close();
        }
        await run("tc", ["qdisc", "del", "dev", ep.hostIfName, "clsact"]);
      }
    } finally {
      progs.close();
    }
    expect(queryAttached(a.hostIfindex, "tcx-ingress").programs).toHaveLength(1);
    expect(await ping(podA!, b.addresses.ipv4!)).toBe(true);
    const COUNT = 60;
    const ab = continuousPing(podA!.path, b.addresses.ipv4!, COUNT);
    await sleep(1000);
    await h.restart();
    const r = await ab;
    expect(COUNT - r.received, "packets lost across the switch").toBeLessThanOrEqual(1);
    for (const ep of [a, b]) {
      await endpointPrograms(ep); // one filter a side, no tcx program left
      expect(existsSync(join(h.bpffsDir, "endpoints", ep.hostIfName))).toBe(false);
    }
    expect(await ping(podA!, b.addresses.ipv6!)).toBe(true);
    expect(await h.pods.release(a.id)).toBe(true);
    expect(await h.pods.release(b.id)).toBe(true);
  });

  it("collects an endpoint whose pod netns was deleted while nobody was running", async () => {
    const h = await createHarness(scope);
    const [gone] = await createPods(scope, 1, "gone");
    const keep = await createPod(scope, "keep");
    const ep = await h.pods.admit({ id: h.newId("gone"), netnsPath: gone!.path });
    const other = await h.pods.admit({ id: h.newId("keep"), netnsPath: keep.path });
    expect(await ping(keep, ep.addresses.ipv4!)).toBe(true);
    expect(pinnedCounters(h.bpffsDir, ep.epNum).REDIRECT_PEER).toBeGreaterThan(0n);
    await h.stop();

    await run("ip", ["netns", "del", gone!.name]);
    await waitFor(
      `${ep.hostIfName} to vanish with its netns`,
      async () => !(await hostLinkNames()).has(ep.hostIfName),
    );
    // The stale state is still there: record, map entries, IPAM (its filters went with the device).
    expect(readDatapathMaps(h.bpffsDir).devices.get(ep.hostIfindex)).toBe(ep.epNum);

    const mgr = await h.restart();
    expect(mgr.list().map((e) => e.id)).toEqual([other.id]);
    await expectNothingLeft(h, ep.id, [ep.addresses.ipv4!, ep.addresses.ipv6!]);
    const maps = readDatapathMaps(h.bpffsDir);
    expect([...maps.devices.values()]).toEqual([other.epNum]);
    expect(maps.counters.filter((k) => k.ep_id === ep.epNum)).toEqual([]);
    expect(h.ipam.usage().map((u) => u.used)).toEqual([1, 1]);
    // The surviving endpoint was adopted and still works.
    const third = await createPod(scope, "third");
    await h.pods.admit({ id: h.newId("third"), netnsPath: third.path });
    expect(await ping(third, other.addresses.ipv4!)).toBe(true);
  });
});
