// The churn benchmark (`npm run bench:churn`): pods created and removed through CRI in waves, on a
// private containerd with nkit (nkit-cni ipam + nkitd's NRI wiring, as `nkit install` sets it up)
// and, in the same run, one with the stock bridge plugin: how many pods per second each takes in
// (RunPodSandbox) and lets go (StopPodSandbox + RemovePodSandbox) with N calls in flight, and
// whether anything of a removed pod stays behind in nkit: endpoint records, IPAM allocations, CNI
// attachments, host devices, datapath map entries, network namespaces, nkitd's descriptors.
// Writes bench/results/churn-<ts>.{json,md} and churn-latest.{json,md}.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { cpus, loadavg, release } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { Codec } from "../../src/bpf/codec.js";
import { datapathObject } from "../../src/bpf/gen/datapath.skel.js";
import { PinnedMaps } from "../../src/bpf/map-source.js";
import { isHostIfName } from "../../src/datapath/naming.js";
import type { Lane } from "../../test/e2e/env/lanes.js";
import type { Nkitd } from "../../test/e2e/env/nkit.js";
import type { Cleanup } from "./cleanup.js";
import { type Instance, podConfig, startVariant } from "./cri.js";
import { type CniVariant, type LatencyMs, latency } from "./cri-report.js";
import { harnessConfig, intOption, keepRun, lanesOf, runLanes } from "./e2e-bench.js";
import { RESULTS_DIR } from "./paths.js";
import { pool } from "./pool.js";
import { median } from "./stats.js";

const log = (m: string) => process.stderr.write(`${m}\n`);

const USAGE = `usage: npm run bench:churn -- [options]   (root; needs npm run build and scripts/e2e/setup.sh)

  --pods N         pods per variant and round                 [100]
  --concurrency N  CRI calls in flight                        [8]
  --rounds N       rounds (variants alternate who goes first) [2]
  --lane L         containerd lane: 1.7 or 2                  [1.7]
  --quick          30 pods, 1 round
  --out DIR        results directory                          [bench/results]
`;

interface ChurnConfig {
  pods: number;
  concurrency: number;
  rounds: number;
  lane: Lane;
  quick: boolean;
  out: string;
}

function parseConfig(argv: string[]): ChurnConfig | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      pods: { type: "string" },
      concurrency: { type: "string" },
      rounds: { type: "string" },
      lane: { type: "string" },
      quick: { type: "boolean" },
      out: { type: "string" },
      help: { type: "boolean" },
    },
  });
  if (values.help) return undefined;
  const quick = values.quick === true;
  const int = (v: string | undefined, d: number, flag: string) => intOption(v, d, flag, 1);
  const lane = lanesOf(values.lane ?? "1.7", log)[0] ?? "1.7";
  return {
    pods: int(values.pods, quick ? 16 : 100, "--pods"),
    concurrency: int(values.concurrency, 8, "--concurrency"),
    rounds: int(values.rounds, quick ? 1 : 2, "--rounds"),
    lane,
    quick,
    out: values.out ?? RESULTS_DIR,
  };
}

/** What nkit holds for pods; every count but the memory and descriptors must be back where it began. */
export interface NkitFootprint {
  endpointRecords: number;
  ipamAllocations: number;
  cniAttachments: number;
  hostDevices: number;
  mapEndpoints: number;
  mapDevices: number;
  podNetns: number;
  nkitdFds: number;
  nkitdRssMiB: number;
}

/** Records in a store directory (one file each; dot files are the store's own marks). */
const countDir = (dir: string): number =>
  existsSync(dir) ? readdirSync(dir).filter((f) => !f.startsWith(".")).length : 0;

/** Entries of a pinned datapath map (a walk of its keys). */
function countMapKeys<K, V>(bpffsDir: string, def: { name: string; key: Codec<K>; value: Codec<V> }): number {
  const m = new PinnedMaps(bpffsDir).map(def.name, def.key, def.value);
  try {
    let n = 0;
    for (const _ of m.keys()) n++;
    return n;
  } finally {
    m.close();
  }
}

function nkitdDevices(): number {
  const r = spawnSync("ip", ["-j", "link", "show"], { encoding: "utf8" });
  const links = JSON.parse(r.stdout || "[]") as { ifname: string }[];
  return links.filter((l) => isHostIfName(l.ifname)).length;
}

/** The sandboxes' network namespaces, bind-mounted under the CRI plugin's state dir (its name
 * differs between containerd 1.7 and 2). */
function sandboxNetns(state: string): number {
  if (!existsSync(state)) return 0;
  return readdirSync(state).reduce((sum, plugin) => sum + countDir(join(state, plugin, "netns")), 0);
}

export function footprint(n: Nkitd): NkitFootprint {
  const pid = n.pid;
  const status = pid ? readFileSync(`/proc/${pid}/status`, "utf8") : "";
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
  return {
    endpointRecords: countDir(join(n.stateDir, "endpoints")),
    ipamAllocations: countDir(join(n.stateDir, "ipam")),
    cniAttachments: countDir(join(n.stateDir, "cni-attachments")),
    hostDevices: nkitdDevices(),
    mapEndpoints: countMapKeys(n.bpffsDir, datapathObject.maps.nk_endpoints),
    mapDevices: countMapKeys(n.bpffsDir, datapathObject.maps.nk_devices),
    podNetns: sandboxNetns(n.env.paths.state),
    nkitdFds: pid ? readdirSync(`/proc/${pid}/fd`).length : Number.NaN,
    nkitdRssMiB: Math.round((rssKb / 1024) * 10) / 10,
  };
}

export interface ChurnRound {
  round: number;
  variant: CniVariant;
  /** Pods per second: RunPodSandbox of every pod, then Stop+Remove of every pod, N in flight. */
  createPerS: number;
  removePerS: number;
  create: LatencyMs;
  remove: LatencyMs;
  /** nkit: its footprint with every pod of the round created (shows what the counts count). */
  peak?: NkitFootprint;
  errors: string[];
}

/** One round of one variant: every pod created, then every pod removed, `concurrency` in flight. */
async function churnRound(inst: Instance, cfg: ChurnConfig, round: number): Promise<ChurnRound> {
  const names = Array.from({ length: cfg.pods }, (_, i) => `c${round}-${inst.variant}-${i}`);
  const ids: string[] = [];
  const errors: string[] = [];
  const oneLine = (e: unknown) => (e as Error).message.split("\n")[0];
  const create = await pool(
    names.length,
    cfg.concurrency,
    async (i) => {
      const name = names[i] as string;
      try {
        const id = await inst.env.cri.runPodSandbox(podConfig(inst.env, name), "");
        inst.nkitd?.track(id);
        ids.push(id);
      } catch (e) {
        throw new Error(`create ${name}: ${oneLine(e)}`);
      }
    },
    errors,
  );
  const peak = inst.nkitd ? footprint(inst.nkitd) : undefined;
  const made = [...ids];
  const remove = await pool(
    made.length,
    cfg.concurrency,
    async (i) => {
      const id = made[i] as string;
      try {
        await inst.env.cri.stopPodSandbox(id);
        await inst.env.cri.removePodSandbox(id);
      } catch (e) {
        throw new Error(`remove ${id.slice(0, 12)}: ${oneLine(e)}`);
      }
    },
    errors,
  );
  const perS = (n: number, ms: number) => Math.round((n / (ms / 1000)) * 10) / 10;
  return {
    round,
    variant: inst.variant,
    createPerS: perS(create.samples.length, create.wallMs),
    removePerS: perS(remove.samples.length, remove.wallMs),
    create: latency(create.samples),
    remove: latency(remove.samples),
    ...(peak ? { peak } : {}),
    errors,
  };
}

export interface ChurnReport {
  kind: "nkit-churn";
  startedAt: string;
  finishedAt: string;
  host: { cpus: number; kernel: string; loadavgStart: number[]; loadavgEnd: number[] };
  config: Omit<ChurnConfig, "out">;
  containerdVersion: string;
  rounds: ChurnRound[];
  /** Medians over the rounds. */
  summary: Record<"nkit" | "bridge", { createPerS: number; removePerS: number }>;
  /** nkit's footprint before the first pod and once every pod of every round is removed. */
  before: NkitFootprint;
  after: NkitFootprint;
  /** The counts that did not come back (empty: no leak). */
  leaks: string[];
}

/** Counts that must come back to where they began once every pod is gone. */
const MUST_RETURN: readonly (keyof NkitFootprint)[] = [
  "endpointRecords",
  "ipamAllocations",
  "cniAttachments",
  "hostDevices",
  "mapEndpoints",
  "mapDevices",
  "podNetns",
];

export function leaksOf(before: NkitFootprint, after: NkitFootprint): string[] {
  return MUST_RETURN.filter((k) => after[k] !== before[k]).map((k) => `${k}: ${before[k]} -> ${after[k]}`);
}

export function churnMarkdown(r: ChurnReport): string {
  const rows = r.rounds.map(
    (x) =>
      `| ${x.round} | ${x.variant} | ${x.createPerS} | ${x.create.p50} / ${x.create.p99} | ${x.removePerS} | ${x.remove.p50} / ${x.remove.p99} | ${x.errors.length} |`,
  );
  const ratio = (a: number, b: number) => (b > 0 ? (a / b).toFixed(2) : "n/a");
  const peak = r.rounds.filter((x) => x.peak).at(-1)?.peak;
  const fp = (Object.keys(r.before) as (keyof NkitFootprint)[]).map(
    (k) =>
      `| ${k} | ${r.before[k]} | ${peak?.[k] ?? ""} | ${r.after[k]} | ${MUST_RETURN.includes(k) ? (r.after[k] === r.before[k] ? "back" : "**LEAK**") : "reported"} |`,
  );
  return [
    "# nkit churn benchmark: pods created and removed through CRI",
    "",
    `Run ${r.startedAt}, \`npm run bench:churn${r.config.quick ? " -- --quick" : ""}\`: containerd ${r.containerdVersion} (lane ${r.config.lane}), ${r.config.pods} pods per variant and round, ${r.config.concurrency} CRI calls in flight, ${r.config.rounds} round(s), the variants alternating who goes first. Host: ${r.host.cpus} CPUs, kernel ${r.host.kernel}, load ${r.host.loadavgStart.map((x) => x.toFixed(2)).join(" ")} at start.`,
    "",
    "| | nkit | bridge plugin | nkit / bridge |",
    "|---|---:|---:|---:|",
    `| pods created per s (median of rounds) | ${r.summary.nkit.createPerS} | ${r.summary.bridge.createPerS} | ${ratio(r.summary.nkit.createPerS, r.summary.bridge.createPerS)} |`,
    `| pods removed per s | ${r.summary.nkit.removePerS} | ${r.summary.bridge.removePerS} | ${ratio(r.summary.nkit.removePerS, r.summary.bridge.removePerS)} |`,
    "",
    r.leaks.length === 0
      ? `**No leak**: once all ${r.config.pods * r.config.rounds} nkit pods were removed, every count below was back where it began.`
      : `**LEAK**: ${r.leaks.join("; ")}.`,
    "",
    "| nkit footprint | before | all pods of the last round up | after | |",
    "|---|---:|---:|---:|---|",
    ...fp,
    "",
    "| round | variant | created/s | RunPodSandbox p50 / p99 ms | removed/s | Stop+Remove p50 / p99 ms | errors |",
    "|---|---|---:|---|---:|---|---:|",
    ...rows,
    "",
    "- Rates divide the pods that succeeded by the wall time of the whole wave (all creates, then all removes).",
    "- Latencies are per call with the others in flight, so they include waiting for containerd and the kernel.",
    "- nkitd's descriptors and RSS are reported, not judged: gRPC connections and V8's heap move on their own.",
    ...r.rounds.flatMap((x) => x.errors.map((e) => `- round ${x.round} ${x.variant}: ${e}`)),
    "",
  ].join("\n");
}

async function runChurn(
  lane: Lane,
  cfg: ChurnConfig,
  cleanup: Cleanup,
): Promise<Omit<ChurnReport, "startedAt" | "finishedAt" | "host" | "config">> {
  log(`lane ${lane}: starting containerd + nkitd, and containerd with the bridge plugin`);
  const nkit = await startVariant(lane, "nkit", cleanup);
  const bridge = await startVariant(lane, "bridge", cleanup);
  // One pod each first: the first sandbox pulls the pause image and warms every cache.
  for (const inst of [nkit, bridge]) {
    const id = await inst.env.cri.runPodSandbox(podConfig(inst.env, `warm-${inst.variant}`), "");
    await inst.env.cri.stopPodSandbox(id);
    await inst.env.cri.removePodSandbox(id);
  }
  const n = nkit.nkitd as Nkitd;
  const before = footprint(n);
  const rounds: ChurnRound[] = [];
  for (let r = 1; r <= cfg.rounds; r++) {
    const order = r % 2 === 1 ? [nkit, bridge] : [bridge, nkit];
    for (const inst of order) {
      const x = await churnRound(inst, cfg, r);
      rounds.push(x);
      log(
        `round ${r} ${inst.variant}: ${x.createPerS} created/s, ${x.removePerS} removed/s${x.errors.length ? `, ${x.errors.length} errors` : ""}`,
      );
    }
  }
  // Unwiring finishes a pair's deletion after answering; give it a moment before counting.
  for (let i = 0; i < 50 && leaksOf(before, footprint(n)).length > 0; i++) {
    await new Promise((res) => setTimeout(res, 100));
  }
  const after = footprint(n);
  const of = (v: CniVariant) => rounds.filter((x) => x.variant === v);
  const summary = {
    nkit: {
      createPerS: median(of("nkit").map((x) => x.createPerS)),
      removePerS: median(of("nkit").map((x) => x.removePerS)),
    },
    bridge: {
      createPerS: median(of("bridge").map((x) => x.createPerS)),
      removePerS: median(of("bridge").map((x) => x.removePerS)),
    },
  };
  const version = nkit.env.version;
  await bridge.env.stop();
  await nkit.env.stop();
  return {
    kind: "nkit-churn",
    containerdVersion: version,
    rounds,
    summary,
    before,
    after,
    leaks: leaksOf(before, after),
  };
}

export async function main(argv: string[]): Promise<number> {
  const cfg = harnessConfig("bench:churn", argv, USAGE, parseConfig, log);
  if (typeof cfg === "number") return cfg;
  const started = new Date();
  const loadavgStart = loadavg();
  const c = cfg;
  const { results, failure } = await runLanes("bench:churn", [cfg.lane], log, (lane, cleanup) =>
    runChurn(lane, c, cleanup),
  );
  const res = results[0];
  if (!res) return 1;
  const { out: _out, ...config } = cfg;
  const report: ChurnReport = {
    ...res,
    startedAt: started.toISOString(),
    finishedAt: new Date().toISOString(),
    host: { cpus: cpus().length, kernel: release(), loadavgStart, loadavgEnd: loadavg() },
    config,
  };
  const md = churnMarkdown(report);
  const base = keepRun(cfg.out, cfg.quick ? "churn-quick" : "churn", started, report, md, !failure);
  process.stdout.write(`${md}\n`);
  log(`results: ${base}.{json,md}`);
  const errors = report.rounds.reduce((s, x) => s + x.errors.length, 0);
  return failure || report.leaks.length > 0 || errors > 0 ? 1 : 0;
}
