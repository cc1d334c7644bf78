// The VM benchmark's guest half (`node bench/dist/bench/vm.js guest`, started by scripts/vm/bench.sh
// inside the netkit VM lane's guest): pod <-> pod traffic over (a) the guest's loopback, (b) nkit in
// netkit mode and (c) nkit in veth mode, interleaved over a few short rounds, then wire/unwire
// latency per pod for both modes. It writes nothing to disk (the guest's root is read-only): the
// result goes to stdout as an encoded block (vm-data.ts) that the host turns into bench/results/vm-*.
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { delNetns } from "./baselines.js";
import { Cleanup, cleanupOnSignals } from "./cleanup.js";
import type { TestKind } from "./measure.js";
import { admitPod, packetCounters } from "./nkit.js";
import { ADDON, DATAPATH_OBJ, RR_BIN } from "./paths.js";
import { sh } from "./proc.js";
import type { PathInfo } from "./report.js";
import {
  baseEnvironment,
  type LivePath,
  loadavg1,
  netnsLeftovers,
  parseOptions,
  runCleanup,
  trafficRuns,
  tryCmd,
  warmUp,
} from "./runner.js";
import {
  CLOCK_LINE,
  encodeData,
  VM_MODES,
  type VmBenchData,
  type VmGuestConfig,
  type VmMode,
  type VmRunRecord,
  type VmWiringRaw,
} from "./vm-data.js";
import { type ModeManager, startManager } from "./vm-endpoints.js";

const log = (m: string) => process.stderr.write(`${m}\n`);

const VM_PATHS: PathInfo[] = [
  {
    key: "loopback",
    tag: "(a)",
    label: "guest loopback",
    detail: "client and server in the guest's root netns over 127.0.0.1 (lo, MTU 65536): the limit.",
  },
  {
    key: "netkit",
    tag: "(b)",
    label: "nkit netkit",
    detail:
      "EndpointManager mode netkit: an L3 netkit pair per pod (primary in the root netns, peer as the pod's eth0, " +
      "peer policy drop), the datapath programs attached as netkit peer/primary links; pod → pod is a bpf_redirect " +
      "from the source peer's program to the destination's primary. BIG TCP on, MTU 1500 (nkit's defaults).",
  },
  {
    key: "veth",
    tag: "(c)",
    label: "nkit veth+tcx",
    detail:
      "EndpointManager mode veth: a veth pair per pod, the datapath programs on tcx ingress/egress of the host veth; " +
      "pod → pod is bpf_redirect_peer into the destination pod. BIG TCP on, MTU 1500 (nkit's defaults).",
  },
];

const CIDRS: Record<VmMode, string> = { netkit: "10.251.10.0/24", veth: "10.251.20.0/24" };

const USAGE = `usage: node bench/dist/bench/vm.js guest [options]   (inside the VM: npm run bench:vm)

  --rounds N      rounds; every path x test is measured once per round   [5]
  --seconds S     seconds per TCP_RR / TCP_CRR / TCP_STREAM run           [3]
  --pods N        pods wired and unwired per mode for the wiring latency  [20]
  --clean-pct P   a run is clean if others used <= P% of the guest        [15]
`;

function parseConfig(argv: string[]): VmGuestConfig {
  const values = parseOptions(
    argv,
    {
      rounds: { type: "string" },
      seconds: { type: "string" },
      pods: { type: "string" },
      "clean-pct": { type: "string" },
    },
    USAGE,
  );
  const num = (v: string | undefined, d: number, name: string, min: number) => {
    if (v === undefined || v === "") return d;
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name}: "${v}" must be a number ≥ ${min}`);
    return n;
  };
  return {
    rounds: Math.round(num(values.rounds, 5, "rounds", 1)),
    seconds: Math.round(num(values.seconds, 3, "seconds", 1)),
    pods: Math.min(200, Math.round(num(values.pods, 20, "pods", 0))),
    cleanThresholdPct: num(values["clean-pct"], 15, "clean-pct", 0),
  };
}

function preflight(): void {
  if (process.getuid?.() !== 0) throw new Error("needs root (netns, netkit, veth, BPF, SCHED_FIFO)");
  for (const f of [ADDON, DATAPATH_OBJ, RR_BIN]) {
    if (!existsSync(f)) throw new Error(`${f} is missing: run npm run bench:vm (it builds everything)`);
  }
  for (const tool of ["iperf3", "nsenter", "taskset", "chrt", "ip"]) {
    if (tryCmd("sh", ["-c", `command -v ${tool}`]) === "?") throw new Error(`${tool} is not available`);
  }
}

function fmt(test: TestKind, r: VmRunRecord): string {
  if (r.error) return `ERROR ${r.error}`;
  const s = r.sample!;
  return test === "stream"
    ? `${s.gbps?.toFixed(3)} Gbit/s retrans ${s.retransmits}`
    : `${Math.round(s.rate ?? 0)}/s p50 ${s.p50_us?.toFixed(0)}µs p99 ${s.p99_us?.toFixed(0)}µs`;
}

/** Lets the host map guest time to host time (vm-monitor.ts). */
function clock(): void {
  log(`${CLOCK_LINE}${Date.now()}`);
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

/**
 * Wire N pods per mode one at a time, the two modes alternating pod by pod (the first mode swaps
 * every pod), then unwire them the same way. The netns are created beforehand (timed apart).
 */
async function wiring(
  prefix: string,
  pods: number,
  managers: Record<VmMode, ModeManager>,
  cleanup: Cleanup,
): Promise<VmWiringRaw> {
  const names = (mode: VmMode) => Array.from({ length: pods }, (_, i) => `${prefix}-w${mode[0]}-${i}`);
  const all = VM_MODES.flatMap(names);
  const delAll = cleanup.defer("wiring netns", () => delNetns(all));
  const netnsAdd: number[] = [];
  for (const n of all) netnsAdd.push(await timed(() => sh("ip", ["netns", "add", n])));
  const wire: Record<VmMode, number[]> = { netkit: [], veth: [] };
  const unwire: Record<VmMode, number[]> = { netkit: [], veth: [] };
  const orderOf = (i: number): VmMode[] => (i % 2 === 0 ? [...VM_MODES] : [...VM_MODES].reverse());
  log(`  wiring ${pods} pods per mode, modes alternating`);
  for (let i = 0; i < pods; i++) {
    for (const mode of orderOf(i)) {
      const m = managers[mode];
      const id = names(mode)[i]!;
      m.ids.add(id);
      wire[mode].push(await timed(() => m.pods.admit({ id, netnsPath: `/run/netns/${id}` })));
      // Untimed: what a wiring finishes after answering (netkit's to-container link) must not
      // hold RTNL into the next pod's timing, which would charge one mode's work to the other.
      await m.mgr.settled(id);
    }
  }
  log(`  unwiring ${pods} pods per mode`);
  for (let i = 0; i < pods; i++) {
    for (const mode of orderOf(i)) {
      const m = managers[mode];
      unwire[mode].push(await timed(() => m.pods.release(names(mode)[i]!)));
    }
  }
  await delAll();
  return {
    pods,
    order: "pod by pod, netkit and veth alternating (the first of the two swaps every pod)",
    netnsAdd,
    wire,
    unwire,
  };
}

function emit(d: VmBenchData): void {
  // stdout to the serial console is a pipe (guest-init.sh | cat): synchronous writes on Linux.
  process.stdout.write(`\n${encodeData(d).join("\n")}\n`);
}

export async function guestMain(argv: string[]): Promise<number> {
  const cfg = parseConfig(argv);
  preflight();
  const started = new Date();
  const prefix = `nkv-${randomBytes(2).toString("hex")}`;
  const cleanup = new Cleanup();
  cleanupOnSignals(cleanup, log);
  const env: Record<string, string | number> = {
    ...baseEnvironment(),
    iproute2: tryCmd("ip", ["-V"]),
    loadavg1: loadavg1(),
  };
  log(
    `nkit VM benchmark (guest ${env.kernel}, ${env.cpus} vCPUs): ${cfg.rounds} rounds × ${cfg.seconds} s, ` +
      `${cfg.pods} pods per mode wired; names ${prefix}-*`,
  );
  const phases: Record<string, number> = {};
  const phase = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      phases[name] = Math.round(performance.now() - t0) / 1000;
    }
  };
  const notes: string[] = [];
  const counters: Record<string, Record<string, number>> = {};
  let runs: VmRunRecord[] = [];
  let wiringRaw: VmWiringRaw | undefined;
  let error: string | undefined;
  try {
    const live: LivePath[] = [];
    const managers = {} as Record<VmMode, ModeManager>;
    await phase("setup", async () => {
      live.push({ info: VM_PATHS[0]!, client: { ipv4: "127.0.0.1" }, server: { ipv4: "127.0.0.1" } });
      for (const mode of VM_MODES) {
        log(`setting up nkit ${mode}`);
        const m = await startManager({ prefix, mode, cidr: CIDRS[mode], cleanup });
        managers[mode] = m;
        const labels = { bench: "vm", mode };
        const c = await admitPod(m, `${prefix}-${mode[0]}-c`, cleanup, labels);
        const s = await admitPod(m, `${prefix}-${mode[0]}-s`, cleanup, labels);
        live.push({
          info: VM_PATHS.find((p) => p.key === mode)!,
          client: { netnsPath: c.netnsPath, ipv4: c.ipv4 },
          server: { netnsPath: s.netnsPath, ipv4: s.ipv4 },
          counters: () => packetCounters(m, [c.ep.id, s.ep.id]),
        });
      }
    });
    const basePort = 20000 + Math.floor(Math.random() * 20000);
    await phase("warmup", () => warmUp(live, basePort + 5000, log));
    // Every path x test once per round, the orders rotating every round (datapath-lab §5).
    runs = await phase("traffic", () =>
      trafficRuns(live, {
        ...cfg,
        idleWaitMs: 1000,
        retries: 0,
        basePort,
        log,
        format: fmt,
        beforeRun: clock,
        afterRun: (r: VmRunRecord) => {
          r.endedAt = new Date().toISOString();
        },
      }),
    );
    for (const p of live) if (p.counters) counters[p.info.key] = p.counters();
    if (cfg.pods > 0) {
      wiringRaw = await phase("wiring", () => wiring(prefix, cfg.pods, managers, cleanup));
    }
  } catch (e) {
    error = e instanceof Error ? e.message : String(e);
    log(`benchmark failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  } finally {
    log("cleaning up");
    await phase("cleanup", async () => {
      await runCleanup(cleanup, log, notes);
    });
  }
  const leftovers = netnsLeftovers(prefix);
  if (leftovers.length) notes.push(`netns left behind in the guest: ${leftovers.join(", ")}`);
  const finished = new Date();
  const data: VmBenchData = {
    version: 1,
    startedAt: started.toISOString(),
    finishedAt: finished.toISOString(),
    durationS: (finished.getTime() - started.getTime()) / 1000,
    config: cfg,
    env,
    paths: VM_PATHS,
    runs,
    counters,
    phases,
    notes,
    ...(wiringRaw ? { wiring: wiringRaw } : {}),
    ...(error ? { error } : {}),
  };
  emit(data);
  log(
    `guest done in ${data.durationS.toFixed(1)} s (${Object.entries(phases)
      .map(([k, v]) => `${k} ${v}s`)
      .join(", ")})`,
  );
  return error ? 1 : 0;
}
