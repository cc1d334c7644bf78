// Turns the raw runs into clean-run medians, ratios to loopback, target verdicts, and Markdown.
import type { Noise } from "./cpu.js";
import type { Sample, TestKind } from "./measure.js";
import type { LatencyStats } from "./stats.js";
import { median } from "./stats.js";
import type { WiringResult } from "./wiring.js";

export interface PathInfo {
  key: string;
  tag: string;
  label: string;
  detail: string;
}

export interface RunRecord {
  round: number;
  path: string;
  test: TestKind;
  attempt: number;
  startedAt: string;
  idleWait: { waitedMs: number; idle: boolean; lastPct: number };
  sample?: Sample;
  noise?: Noise;
  clean: boolean;
  error?: string;
  /** nkit paths: program counters (packets per reason, both endpoints) during this run. */
  counters?: Record<string, number>;
}

export const METRICS = {
  rr_rate: { test: "rr", field: "rate", label: "TCP_RR trans/s", better: "higher", unit: "/s" },
  rr_p50: { test: "rr", field: "p50_us", label: "TCP_RR p50 µs", better: "lower", unit: "µs" },
  rr_p99: { test: "rr", field: "p99_us", label: "TCP_RR p99 µs", better: "lower", unit: "µs" },
  crr_rate: { test: "crr", field: "rate", label: "TCP_CRR conn/s", better: "higher", unit: "/s" },
  crr_p50: { test: "crr", field: "p50_us", label: "TCP_CRR p50 µs", better: "lower", unit: "µs" },
  crr_p99: { test: "crr", field: "p99_us", label: "TCP_CRR p99 µs", better: "lower", unit: "µs" },
  stream_gbps: {
    test: "stream",
    field: "gbps",
    label: "TCP_STREAM Gbit/s",
    better: "higher",
    unit: "Gbit/s",
  },
  stream_retrans: {
    test: "stream",
    field: "retransmits",
    label: "STREAM retransmits/run",
    better: "lower",
    unit: "",
  },
} as const satisfies Record<
  string,
  { test: TestKind; field: keyof Sample; label: string; better: "higher" | "lower"; unit: string }
>;
export type MetricKey = keyof typeof METRICS;
const METRIC_KEYS = Object.keys(METRICS) as MetricKey[];

export interface MetricSummary {
  median: number;
  min: number;
  max: number;
  n: number;
  /** "clean": medians of clean runs; "all": no clean run, every run used. */
  basis: "clean" | "all";
}

export interface PathSummary extends PathInfo {
  runs: number;
  cleanRuns: number;
  metrics: Partial<Record<MetricKey, MetricSummary>>;
  /** Ratio of this path's median to loopback's (same basis rules). */
  ratios: Partial<Record<MetricKey, number>>;
}

export function summarize(paths: readonly PathInfo[], runs: readonly RunRecord[]): PathSummary[] {
  const out: PathSummary[] = paths.map((p) => {
    const mine = runs.filter((r) => r.path === p.key && r.sample);
    const metrics: Partial<Record<MetricKey, MetricSummary>> = {};
    for (const k of METRIC_KEYS) {
      const m = METRICS[k];
      const ofTest = mine.filter((r) => r.test === m.test && r.sample?.[m.field] !== undefined);
      const clean = ofTest.filter((r) => r.clean);
      const use = clean.length > 0 ? clean : ofTest;
      const xs = use.map((r) => r.sample![m.field]!);
      if (xs.length === 0) continue;
      metrics[k] = {
        median: median(xs),
        min: Math.min(...xs),
        max: Math.max(...xs),
        n: xs.length,
        basis: clean.length > 0 ? "clean" : "all",
      };
    }
    return {
      ...p,
      runs: runs.filter((r) => r.path === p.key).length,
      cleanRuns: runs.filter((r) => r.path === p.key && r.clean).length,
      metrics,
      ratios: {},
    };
  });
  const base = out.find((s) => s.key === "loopback");
  for (const s of out) {
    for (const k of METRIC_KEYS) {
      const a = s.metrics[k]?.median;
      const b = base?.metrics[k]?.median;
      if (a !== undefined && b !== undefined && b !== 0) s.ratios[k] = a / b;
    }
  }
  return out;
}

export interface Target {
  id: string;
  text: string;
  value: number | undefined;
  shown: string;
  verdict: "PASS" | "MISS" | "n/a";
  note: string;
}

const closeCall = (ratio: number) =>
  Math.abs(ratio - 1) < 0.1 ? "within ±10%: not significant on this VM" : "";

export function evaluateTargets(summary: readonly PathSummary[], wiring: WiringResult | undefined): Target[] {
  const get = (key: string) => summary.find((s) => s.key === key);
  const nkit = get("nkit");
  const bridge = get("bridge");
  const targets: Target[] = [];
  const add = (
    id: string,
    text: string,
    value: number | undefined,
    ok: (v: number) => boolean,
    shown: string,
    note = "",
  ) =>
    targets.push({
      id,
      text,
      value,
      shown: value === undefined ? "no data" : shown,
      verdict: value === undefined ? "n/a" : ok(value) ? "PASS" : "MISS",
      note,
    });
  // The fast-path targets (issue #13): against loopback and routed veth + BIG TCP, same run.
  const rrP50 = nkit?.ratios.rr_p50;
  add("rr_p50", "nkit TCP_RR p50 ≤ 1.05 × loopback", rrP50, (v) => v <= 1.05, `${fx(rrP50)}× loopback`);
  const crr = nkit?.ratios.crr_rate;
  add("crr", "nkit TCP_CRR ≥ 0.95 × loopback", crr, (v) => v >= 0.95, `${fx(crr)}× loopback`);
  const st = nkit?.ratios.stream_gbps;
  add("stream", "nkit TCP_STREAM ≥ 1.0 × loopback", st, (v) => v >= 1.0, `${fx(st)}× loopback`);
  const routedBig = get("routed-big")?.metrics.stream_gbps?.median;
  const stMed = nkit?.metrics.stream_gbps?.median;
  const vsRouted = stMed !== undefined && routedBig ? stMed / routedBig : undefined;
  add(
    "stream_vs_routed",
    "nkit TCP_STREAM ≥ (d') routed veth + BIG TCP",
    vsRouted,
    (v) => v >= 1.0,
    `${fx(vsRouted)}× routed + BIG TCP`,
    vsRouted === undefined ? "" : closeCall(vsRouted),
  );
  const rt = nkit?.metrics.stream_retrans?.median;
  add("retransmits", "nkit STREAM retransmits ≤ 50 per run", rt, (v) => v <= 50, `${fx(rt, 0)} per run`);
  for (const [k, name] of [
    ["rr_rate", "TCP_RR rate"],
    ["stream_gbps", "TCP_STREAM"],
    ["crr_rate", "TCP_CRR rate"],
  ] as const) {
    const a = nkit?.metrics[k]?.median;
    const b = bridge?.metrics[k]?.median;
    const r = a !== undefined && b !== undefined && b !== 0 ? a / b : undefined;
    add(
      `vs_bridge_${k}`,
      `nkit ahead of (c) bridge on ${name}`,
      r,
      (v) => v > 1,
      `${fx(r)}× bridge`,
      r === undefined ? "" : closeCall(r),
    );
  }
  const w = wiring?.wire.p50_ms;
  add("wire_p50", "wire p50 ≤ 5 ms", w, (v) => v <= 5, `${fx(w)} ms`);
  const w99 = wiring?.wire.p99_ms;
  add("wire_p99", "wire p99 ≤ 15 ms", w99, (v) => v <= 15, `${fx(w99)} ms`);
  return targets;
}

// ---------- formatting ----------

function fx(x: number | undefined, digits = 2): string {
  if (x === undefined || Number.isNaN(x)) return "–";
  return x.toFixed(digits);
}

function fmtValue(k: MetricKey, x: number | undefined): string {
  if (x === undefined) return "–";
  if (k === "stream_gbps") return x.toFixed(2);
  if (k.endsWith("_rate") || k === "stream_retrans") return Math.round(x).toLocaleString("en-US");
  return x.toFixed(1);
}

function cell(s: PathSummary, k: MetricKey): string {
  const m = s.metrics[k];
  if (!m) return "–";
  const flag = m.basis === "all" ? "†" : "";
  return `${fmtValue(k, m.median)} (${fmtValue(k, m.min)}–${fmtValue(k, m.max)}) [${m.n}]${flag}`;
}

function ratioCell(s: PathSummary, k: MetricKey): string {
  const r = s.ratios[k];
  if (r === undefined) return "–";
  const flag = s.metrics[k]?.basis === "all" ? "†" : "";
  return `${r.toFixed(2)}${flag}`;
}

const RATIO_COLS: readonly MetricKey[] = [
  "rr_rate",
  "rr_p50",
  "rr_p99",
  "crr_rate",
  "crr_p50",
  "crr_p99",
  "stream_gbps",
];

/** Columns of the absolute-value tables: the ratio columns plus retransmits. */
export const VALUE_COLS: readonly MetricKey[] = [...RATIO_COLS, "stream_retrans"];

function ratioTable(summary: readonly PathSummary[]): string {
  const head = `| path | ${RATIO_COLS.map((k) => `${METRICS[k].label.replace(/ (trans|conn)\/s$/, " rate")} (${METRICS[k].better === "higher" ? "↑" : "↓"})`).join(" | ")} |`;
  const sep = `|---|${RATIO_COLS.map(() => "---").join("|")}|`;
  const rows = summary.map(
    (s) => `| ${s.tag} ${s.label} | ${RATIO_COLS.map((k) => ratioCell(s, k)).join(" | ")} |`,
  );
  return [head, sep, ...rows].join("\n");
}

function targetTable(targets: readonly Target[]): string {
  return [
    "| target | measured | verdict | note |",
    "|---|---|---|---|",
    ...targets.map((t) => `| ${t.text} | ${t.shown} | **${t.verdict}** | ${t.note} |`),
  ].join("\n");
}

function latRow(name: string, l: LatencyStats, extra = ""): string {
  return `| ${name} | ${l.n} | ${fx(l.p50_ms)} | ${fx(l.p99_ms)} | ${fx(l.mean_ms)} | ${fx(l.min_ms)}–${fx(l.max_ms)} | ${extra} |`;
}

function wiringTable(w: WiringResult): string {
  return [
    "| operation (per pod) | n | p50 ms | p99 ms | mean ms | min–max ms | note |",
    "|---|---|---|---|---|---|---|",
    latRow(
      "nkit wire: IPAM + `EndpointManager.wire` (veth + tc, BIG TCP)",
      w.wire,
      "`PodLifecycle.admit`, in-process netlink + BPF, sequential",
    ),
    latRow(
      "nkit unwire: `EndpointManager.unwire` + IPAM release",
      w.unwire,
      "answers once off the datapath; the pair's deletion follows",
    ),
    latRow("`ip netns add` (for scale)", w.netnsAdd, "includes spawning `ip`"),
    latRow(
      "bridge recipe via iproute2 commands",
      w.bridgeIproute2,
      `${w.bridgeIproute2.commandsPerPod} \`ip\` processes; not a CNI plugin`,
    ),
    latRow("spawning `ip -V` (one process)", w.spawn, "floor of every iproute2 step"),
    latRow(
      "↳ primitive: clsact + 2 cls_bpf filters",
      w.yardsticks.tcFilterPair,
      "what a veth wire does: no RCU grace period",
    ),
    latRow(
      "↳ primitive: attach 2 tcx links concurrently",
      w.yardsticks.tcxAttachPair,
      "what a veth wire did; each attach waits for an RCU grace period under RTNL (netkit still does)",
    ),
    latRow("↳ primitive: detach 2 tcx links", w.yardsticks.tcxDetachPair, "close of the link fds"),
    latRow(
      "↳ primitive: one crash-safe state write",
      w.yardsticks.atomicStateWrite,
      "write+fsync+rename+fsync dir; a wire does 1 (IPAM) and 2 endpoint-record writes without fsync",
    ),
  ].join("\n");
}

export interface ReportInput {
  title: string;
  startedAt: string;
  finishedAt: string;
  durationS: number;
  command: string;
  mode: string;
  config: Record<string, unknown>;
  env: Record<string, string | number>;
  paths: readonly PathInfo[];
  runs: readonly RunRecord[];
  summary: readonly PathSummary[];
  targets: readonly Target[];
  wiring: WiringResult | undefined;
  counters: Record<string, Record<string, number>>;
  notes: readonly string[];
}

function noiseSection(r: ReportInput, cleanPct: number): string {
  const withNoise = r.runs.filter((x) => x.noise);
  const others = withNoise.map((x) => x.noise!.othersPct + x.noise!.stealPct);
  const unclean = withNoise.filter((x) => !x.clean);
  const errors = r.runs.filter((x) => x.error);
  const lines = [
    `${withNoise.length - unclean.length} of ${withNoise.length} measurements clean (other processes + steal ≤ ${cleanPct}% of the machine).`,
    `Noise from others per measurement: median ${fx(median(others), 1)}%, max ${fx(Math.max(0, ...others), 1)}%.`,
  ];
  if (unclean.length) {
    lines.push(
      "",
      "Unclean measurements (excluded where the same path/test has clean ones):",
      "",
      "| round | path | test | others % | steal % | ours % | kthreads % |",
      "|---|---|---|---|---|---|---|",
      ...unclean.map(
        (x) =>
          `| ${x.round} | ${x.path} | ${x.test} | ${fx(x.noise!.othersPct, 1)} | ${fx(x.noise!.stealPct, 1)} | ${fx(x.noise!.oursPct, 1)} | ${fx(x.noise!.kernelPct, 1)} |`,
      ),
    );
  }
  if (errors.length) {
    lines.push(
      "",
      "Failed measurements:",
      "",
      ...errors.map((x) => `- round ${x.round} ${x.path} ${x.test}: ${x.error}`),
    );
  }
  return lines.join("\n");
}

export function markdown(r: ReportInput): string {
  const cleanPct = Number(r.config.cleanThresholdPct);
  const md: string[] = [];
  md.push(`# ${r.title}`, "");
  md.push(
    `Run ${r.startedAt} → ${r.finishedAt} (${Math.round(r.durationS)} s), mode **${r.mode}**: ` +
      `${r.config.rounds} rounds × ${r.config.seconds} s per measurement, paths interleaved and rotated each round, ` +
      "client on CPU0 / server on CPU1 under SCHED_FIFO 10.",
    "",
    `Command: \`${r.command}\``,
    "",
    `Machine: ${Object.entries(r.env)
      .map(([k, v]) => `${k} ${v}`)
      .join(" · ")}`,
    "",
  );
  md.push("## Targets (reported, never asserted)", "", targetTable(r.targets), "");
  md.push(
    "## Ratios to (a) host loopback",
    "",
    "Median of clean runs divided by loopback's. ↑ = higher is better (rates, throughput), ↓ = lower is better (latency). " +
      "† = no clean run for that path/test, median of all runs. Differences under ~10–15% are within this VM's noise.",
    "",
    ratioTable(r.summary),
    "",
  );
  const absCols = VALUE_COLS;
  md.push(
    "## Absolute values",
    "",
    "Clean medians: median (min–max) [n]. Absolute numbers on a shared 2-vCPU VM are only good for ratios.",
    "",
    `| path | ${absCols.map((k) => METRICS[k].label).join(" | ")} |`,
    `|---|${absCols.map(() => "---").join("|")}|`,
    ...r.summary.map((s) => `| ${s.tag} ${s.label} | ${absCols.map((k) => cell(s, k)).join(" | ")} |`),
    "",
  );
  md.push("## Paths", "", ...r.paths.map((p) => `- **${p.tag} ${p.label}**: ${p.detail}`), "");
  if (r.wiring) {
    md.push(
      "## Wiring latency",
      "",
      `${r.wiring.pods} pods, netns pre-created (timed separately), each wired one at a time and then unwired one at a time. ` +
        `Others' CPU during wiring: ${fx(r.wiring.noise.wire.othersPct, 1)}%, during unwiring: ${fx(r.wiring.noise.unwire.othersPct, 1)}%.`,
      "",
      wiringTable(r.wiring),
      "",
    );
  }
  if (Object.keys(r.counters).length) {
    md.push(
      "## Which program path carried nkit's traffic",
      "",
      "Packets counted by the datapath programs over all nkit measurements (both endpoints; `REDIRECT_PEER` = " +
        "bpf_redirect_peer straight into the other pod, `TO_STACK` = handed to the host stack, `TO_CONTAINER` = " +
        "seen by the to-container program, i.e. went through the host veth the slow way).",
      "",
      "| path | counters |",
      "|---|---|",
      ...Object.entries(r.counters).map(
        ([k, c]) =>
          `| ${k} | ${
            Object.entries(c)
              .filter(([, v]) => v > 0)
              .map(([n, v]) => `${n} ${v.toLocaleString("en-US")}`)
              .join(", ") || "none"
          } |`,
      ),
      "",
    );
  }
  md.push("## Noise", "", noiseSection(r, cleanPct), "");
  if (r.notes.length) md.push("## Notes", "", ...r.notes.map((n) => `- ${n}`), "");
  return md.join("\n");
}

function cleanLine(r: ReportInput): string {
  const measured = r.runs.filter((x) => x.noise);
  const clean = measured.filter((x) => x.clean).length;
  return `Clean measurements: ${clean} of ${measured.length} (load average ${r.env.loadavg1} at the start).`;
}

/** The compact block kept in bench/README.md between the latest-results markers. */
export function readmeBlock(r: ReportInput, mdFile: string): string {
  return [
    `Latest full run: ${r.startedAt} (${r.config.rounds} rounds × ${r.config.seconds} s, ${r.env.kernel}, ${r.env.cpus} vCPUs). ` +
      `Full report: [results/${mdFile}](results/${mdFile}).`,
    "",
    `${cleanLine(r)} † = no clean run for that path/test: median of all runs.`,
    "",
    ratioTable(r.summary),
    "",
    targetTable(r.targets),
    "",
    ...(r.wiring ? [wiringTable(r.wiring), ""] : []),
  ].join("\n");
}
