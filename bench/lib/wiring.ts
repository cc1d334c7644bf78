// Wire/unwire latency of nkit's EndpointManager, pod by pod, against two yardsticks:
// `ip netns add` (what creating the sandbox's netns costs) and the bridge recipe done with iproute2
// commands (one `ip` process per step, as a shell script would do it; this is not a CNI plugin).
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BpfLink } from "../../src/bpf/link.js";
import { PinDir } from "../../src/bpf/pins.js";
import { DatapathPrograms } from "../../src/datapath/programs.js";
import { Rtnl } from "../../src/netlink/index.js";
import { writeFileAtomic } from "../../src/state/atomic-file.js";
import { addNetns, BRIDGE_POD_COMMANDS, bridgeAttachPod, bridgeHost, delNetns } from "./baselines.js";
import type { Cleanup } from "./cleanup.js";
import { type Noise, noiseBetween, snapshot } from "./cpu.js";
import { startNkit } from "./nkit.js";
import { DATAPATH_OBJ } from "./paths.js";
import { sh } from "./proc.js";
import { type LatencyStats, latencyStats } from "./stats.js";

export interface WiringResult {
  pods: number;
  netnsAdd: LatencyStats;
  wire: LatencyStats;
  unwire: LatencyStats;
  /** Spawning one trivial process (`ip -V`): the floor under every iproute2 step. */
  spawn: LatencyStats;
  bridgeIproute2: LatencyStats & { commandsPerPod: number };
  /**
   * The kernel and disk primitives one wire is built from, timed alone: attaching the two tcx
   * programs (concurrently, as wire does; each attach waits for an RCU grace period) and one
   * crash-safe state write (write, fsync, rename, fsync dir; wire does three plus one for IPAM).
   */
  yardsticks: {
    tcxAttachPair: LatencyStats;
    tcxDetachPair: LatencyStats;
    /** What a veth wire does now: the clsact qdisc and the two cls_bpf filters. */
    tcFilterPair: LatencyStats;
    atomicStateWrite: LatencyStats;
  };
  noise: { netns: Noise; wire: Noise; unwire: Noise; bridge: Noise };
  raw: { netnsAdd: number[]; wire: number[]; unwire: number[]; bridgeIproute2: number[] };
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await fn();
  return [r, performance.now() - t0];
}

export async function wiringBench(o: {
  prefix: string;
  pods: number;
  bridgePods: number;
  cleanup: Cleanup;
  log: (m: string) => void;
}): Promise<WiringResult> {
  const names = Array.from({ length: o.pods }, (_, i) => `${o.prefix}-w-${i}`);
  const netnsAdd: number[] = [];
  const wire: number[] = [];
  const unwire: number[] = [];
  const nkit = await startNkit({
    prefix: o.prefix,
    label: "wiring",
    bigTcp: true,
    cleanup: o.cleanup,
    v4Prefix: o.pods > 250 ? 20 : 24,
  });
  try {
    // Sandboxes first (not part of wiring), but timed for scale.
    o.cleanup.defer("wiring netns", () => delNetns(names));
    let a = snapshot();
    for (const n of names) netnsAdd.push((await timed(() => sh("ip", ["netns", "add", n])))[1]);
    const netnsNoise = noiseBetween(a, snapshot());

    o.log(`  wiring ${o.pods} pods one at a time`);
    const ids = names.map((n) => `${n}-${randomBytes(2).toString("hex")}`);
    a = snapshot();
    for (const [i, id] of ids.entries()) {
      nkit.ids.add(id);
      const [, ms] = await timed(() => nkit.pods.admit({ id, netnsPath: `/run/netns/${names[i]}` }));
      wire.push(ms);
    }
    const wireNoise = noiseBetween(a, snapshot());
    a = snapshot();
    for (const id of ids) unwire.push((await timed(() => nkit.pods.release(id)))[1]);
    const unwireNoise = noiseBetween(a, snapshot());
    await delNetns(names);

    o.log(`  bridge recipe with iproute2 for ${o.bridgePods} pods`);
    const spawn: number[] = [];
    for (let i = 0; i < 20; i++) spawn.push((await timed(() => sh("ip", ["-V"])))[1]);
    const host = `${o.prefix}-wbr-h`;
    await bridgeHost(host, o.cleanup, "10.201.1");
    const bridge: number[] = [];
    for (let i = 0; i < o.bridgePods; i++) await addNetns(`${o.prefix}-wbr-${i}`, o.cleanup);
    a = snapshot();
    for (let i = 0; i < o.bridgePods; i++) {
      const pod = `${o.prefix}-wbr-${i}`;
      const [, ms] = await timed(() =>
        bridgeAttachPod(host, pod, `veth${i}`, `10.201.1.${i + 1}`, "10.201.1"),
      );
      bridge.push(ms);
    }
    const bridgeNoise = noiseBetween(a, snapshot());
    await delNetns([host, ...Array.from({ length: o.bridgePods }, (_, i) => `${o.prefix}-wbr-${i}`)]);

    o.log("  yardsticks: tcx attach pair, atomic state write");
    const yardsticks = await primitives(o.prefix, o.cleanup, 20);
    return {
      pods: o.pods,
      netnsAdd: latencyStats(netnsAdd),
      wire: latencyStats(wire),
      unwire: latencyStats(unwire),
      spawn: latencyStats(spawn),
      bridgeIproute2: { ...latencyStats(bridge), commandsPerPod: BRIDGE_POD_COMMANDS },
      yardsticks,
      noise: { netns: netnsNoise, wire: wireNoise, unwire: unwireNoise, bridge: bridgeNoise },
      raw: { netnsAdd, wire, unwire, bridgeIproute2: bridge },
    };
  } finally {
    await nkit.close();
  }
}

async function primitives(prefix: string, cleanup: Cleanup, n: number): Promise<WiringResult["yardsticks"]> {
  const pinRoot = `/sys/fs/bpf/${prefix}-yard`;
  const dev = `${prefix.replace(/-/g, "")}y`; // e.g. nkb1a2by: a root-netns veth, peer in our netns
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-yard-`));
  cleanup.defer("yardstick state dir", () => rmSync(dir, { recursive: true, force: true }));
  cleanup.defer("yardstick pins", () => new PinDir(pinRoot).removeAll());
  const ns = await addNetns(`${prefix}-yard`, cleanup);
  cleanup.defer(`device ${dev}`, () => sh("ip", ["link", "del", dev]).catch(() => undefined));
  await sh("ip", ["link", "add", dev, "type", "veth", "peer", "name", "eth0", "netns", `${prefix}-yard`]);
  const host = await Rtnl.host();
  const progs = DatapathPrograms.load(pinRoot, DATAPATH_OBJ);
  const attach: number[] = [];
  const detach: number[] = [];
  const writes: number[] = [];
  const filters: number[] = [];
  try {
    const ifindex = (await host.requireLink(dev)).index;
    for (let i = 0; i < n; i++) {
      const [, ms] = await timed(async () => {
        await host.ensureClsact(ifindex);
        for (const [direction, prog] of [
          ["ingress", progs.fromContainer],
          ["egress", progs.toContainer],
        ] as const) {
          await host.attachTcBpf({
            ifindex,
            direction,
            progFd: prog.fd,
            name: prog.name,
            priority: 1,
            handle: 1,
          });
        }
      });
      filters.push(ms);
      await sh("tc", ["qdisc", "del", "dev", dev, "clsact"]);
    }
    for (let i = 0; i < n; i++) {
      const [links, ms] = await timed(() =>
        Promise.all([
          BpfLink.attachTcxAsync(progs.fromContainer, { ifindex, direction: "ingress" }),
          BpfLink.attachTcxAsync(progs.toContainer, { ifindex, direction: "egress" }),
        ]),
      );
      attach.push(ms);
      const t0 = performance.now();
      for (const l of links) l.close();
      detach.push(performance.now() - t0);
    }
    const data = JSON.stringify({ version: 1, id: "x".repeat(64), addresses: { ipv4: "10.0.0.1" } });
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      writeFileAtomic(join(dir, "endpoint.json"), data);
      writes.push(performance.now() - t0);
    }
  } finally {
    progs.close();
    await host.close();
    await sh("ip", ["link", "del", dev]).catch(() => undefined);
    await ns.del();
  }
  return {
    tcxAttachPair: latencyStats(attach),
    tcxDetachPair: latencyStats(detach),
    tcFilterPair: latencyStats(filters),
    atomicStateWrite: latencyStats(writes),
  };
}
