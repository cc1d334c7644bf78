// The performance report: from the benchmarks' result JSON (a suite run's, or each benchmark's
// latest), the headline table (every issue target shown met or missed), the charts (charts.ts) and
// the two documents that carry them: report.md (Markdown with the SVGs beside it) and report.html
// (one page, the SVGs inline).
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { type Chart, distribution, groupedBars, renderSvg, scaleLines } from "./charts.js";
import { ROOT } from "./paths.js";
import { round } from "./stats.js";

/** The results the report draws from, by benchmark (suite names), each as its JSON was written. */
export interface ReportInput {
  /** Where they came from: a suite run's JSON, or "the latest results of each benchmark". */
  origin: string;
  generatedAt: string;
  results: Partial<Record<ReportSource, unknown>>;
  /** Links to each benchmark's own Markdown report, relative to the report's directory. */
  details?: Partial<Record<ReportSource, string>>;
}

export type ReportSource = "datapath" | "wiring" | "cri" | "churn" | "services" | "masq" | "memory" | "vm";

// What the report reads of each result (the benchmarks' own types hold more).
interface Stat {
  median: number;
  min: number;
  max: number;
}
interface DatapathResult {
  summary?: { key: string; label: string; metrics: Partial<Record<string, Stat>> }[];
  targets?: { id: string; text: string; shown: string; verdict: string }[];
  wiring?: { raw?: { wire: number[]; unwire: number[] } };
}
interface Latency {
  p50: number;
  p99: number;
}
interface CriResult {
  lanes?: {
    lane: string;
    runPodSandbox: Record<string, Latency>;
    stopRemove: Record<string, Latency>;
    cniWire?: { nkitAddDel: Latency; bridgeAddDel: Latency };
  }[];
  targets?: { lane: string; name: string; want: string; got: string; pass: boolean }[];
}
interface ChurnResult {
  summary?: Record<"nkit" | "bridge", { createPerS: number; removePerS: number }>;
  leaks?: string[];
}
interface SideBySideResult {
  rows?: {
    path: string;
    services?: number;
    test: string;
    rate: number | null;
    p50_us: number | null;
    gbps?: number | null;
    rateRange?: number[];
    p50Range?: number[];
  }[];
  targets?: { name: string; value: number; target: string; pass?: boolean }[];
}
interface LoadResult {
  nkitd?: {
    idleRssMiB: number;
    rssAtEndpointsMiB: number;
    rssAtBothMiB: number;
    rssAtServicesMiB: number;
    peakRssMiB: number;
    /** After a quiet spell at each stage (runs since the load bench waits for it). */
    settledRssMiB?: { idle: number; endpoints: number; both: number; services: number };
  };
  config?: { endpoints: number; services: number };
}
interface VmResult {
  ratios?: { netkit_vs_veth?: Record<string, number> };
  wiring?: { ratios?: { wire_p50?: number } };
  raw?: { wiring?: { wire: Record<string, number[]>; unwire: Record<string, number[]> } };
}

/** One line of the headline table. */
export interface Headline {
  what: string;
  value: string;
  goal: string;
  verdict: "met" | "missed" | "";
  source: ReportSource;
  /** Why a missed target is missed (bench/miss-reasons.json). */
  why?: string;
}

/** A known cause of a miss: rows of `source` whose text matches `match`. */
export interface MissReason {
  source: ReportSource;
  match: string;
  reason: string;
}

/** The known causes of misses, kept beside the evidence (bench/miss-reasons.json). */
export function loadMissReasons(file = join(ROOT, "bench", "miss-reasons.json")): MissReason[] {
  return (JSON.parse(readFileSync(file, "utf8")) as { reasons: MissReason[] }).reasons;
}

/** Gives each missed row the first known cause that matches it. */
export function explainMisses(h: readonly Headline[], reasons: readonly MissReason[]): Headline[] {
  return h.map((x) => {
    if (x.verdict !== "missed") return x;
    const r = reasons.find((m) => m.source === x.source && new RegExp(m.match).test(x.what));
    return r ? { ...x, why: r.reason } : x;
  });
}

const pick = <T>(input: ReportInput, s: ReportSource): T | undefined => input.results[s] as T | undefined;

/** The datapath result with traffic (a suite run splits datapath and wiring into two results). */
function datapathOf(input: ReportInput): DatapathResult | undefined {
  for (const s of ["datapath", "wiring"] as const) {
    const d = pick<DatapathResult>(input, s);
    if (d?.summary?.length) return d;
  }
  return undefined;
}

function wiringOf(input: ReportInput): DatapathResult["wiring"] | undefined {
  for (const s of ["wiring", "datapath"] as const) {
    const w = pick<DatapathResult>(input, s)?.wiring;
    if (w?.raw) return w;
  }
  return undefined;
}

const verdictOf = (pass: boolean | undefined): Headline["verdict"] =>
  pass === undefined ? "" : pass ? "met" : "missed";

export function headlines(input: ReportInput): Headline[] {
  const out: Headline[] = [];
  const dp = datapathOf(input);
  const dpWiring = pick<DatapathResult>(input, "wiring") ?? dp;
  for (const id of ["rr_p50", "crr", "stream", "retransmits"]) {
    const t = dp?.targets?.find((x) => x.id === id);
    if (t) out.push(dpLine(t, "datapath"));
  }
  for (const id of ["wire_p50", "wire_p99"]) {
    const t = dpWiring?.targets?.find((x) => x.id === id);
    if (t && !t.shown.includes("no data")) out.push(dpLine(t, "wiring"));
  }
  const cri = pick<CriResult>(input, "cri");
  for (const t of cri?.targets ?? []) {
    if (!/^(RunPodSandbox p50|Stop\+Remove p50|CNI ADD\+DEL)/.test(t.name)) continue;
    out.push({
      what: `${t.name} (containerd lane ${t.lane})`,
      value: t.got,
      goal: t.want,
      verdict: verdictOf(t.pass),
      source: "cri",
    });
  }
  const churn = pick<ChurnResult>(input, "churn");
  if (churn?.summary) {
    const { nkit, bridge } = churn.summary;
    out.push({
      what: "pods created / removed per second through CRI, nkit / bridge plugin",
      value: `${round(nkit.createPerS / bridge.createPerS)}× / ${round(nkit.removePerS / bridge.removePerS)}×`,
      goal: "",
      verdict: "",
      source: "churn",
    });
    out.push({
      what: "nothing left of removed pods (records, IPAM, devices, map entries, netns)",
      value: churn.leaks?.length ? churn.leaks.join("; ") : "nothing left",
      goal: "no leak",
      verdict: churn.leaks?.length ? "missed" : "met",
      source: "churn",
    });
  }
  for (const [source, names] of [
    ["services", /10,000|iptables/],
    ["masq", /STREAM|CRR/],
  ] as const) {
    for (const t of pick<SideBySideResult>(input, source)?.targets ?? []) {
      if (!names.test(t.name) || t.pass === undefined) continue;
      out.push({ what: t.name, value: String(t.value), goal: t.target, verdict: verdictOf(t.pass), source });
    }
  }
  const load = pick<LoadResult>(input, "memory");
  if (load?.nkitd) {
    // What nkitd holds with that state: the settled reading when the run has one.
    const settled = load.nkitd.settledRssMiB?.both;
    const mib = settled ?? load.nkitd.rssAtBothMiB;
    const mb = mib * 1.048576;
    out.push({
      what: `nkitd RSS with ${(load.config?.services ?? 10000).toLocaleString("en")} services and ${(load.config?.endpoints ?? 1000).toLocaleString("en")} endpoints`,
      value:
        settled === undefined
          ? `${round(mib)} MiB (${Math.round(mb)} MB)`
          : `${round(mib)} MiB (${Math.round(mb)} MB) settled; ${round(load.nkitd.rssAtBothMiB)} MiB right after the burst`,
      goal: "≤ 80 MB",
      verdict: verdictOf(mb <= 80),
      source: "memory",
    });
  }
  const vmRatios = pick<VmResult>(input, "vm")?.ratios?.netkit_vs_veth;
  const vmWire = vmWireRatio(pick<VmResult>(input, "vm"));
  if (vmWire !== undefined) {
    out.push({
      what: "netkit wire p50 / veth wire p50 (VM lane, emulated)",
      value: `${round(vmWire)}×`,
      goal: "≤ 1",
      verdict: verdictOf(vmWire <= 1),
      source: "vm",
    });
  }
  if (vmRatios?.rr_p50 !== undefined) {
    out.push({
      what: "netkit / veth TCP_RR p50 (VM lane, emulated)",
      value: `${round(vmRatios.rr_p50)}×`,
      goal: "",
      verdict: "",
      source: "vm",
    });
  }
  return out;
}

function dpLine(t: NonNullable<DatapathResult["targets"]>[number], source: ReportSource): Headline {
  const goal = /([≤≥] [\d.]+( × \w+| ms| per run)?)/.exec(t.text)?.[1] ?? "";
  const what = goal ? t.text.replace(goal, "").trim() : t.text;
  return {
    what,
    value: t.shown,
    goal,
    verdict: t.verdict === "PASS" ? "met" : t.verdict === "MISS" ? "missed" : "",
    source,
  };
}

const pathLegend = (dp: DatapathResult): string =>
  (dp.summary ?? []).map((p) => `\`${p.key}\` ${p.label}`).join(", ");

/** netkit wire p50 / veth wire p50, as the VM benchmark computed it. */
const vmWireRatio = (vm: VmResult | undefined): number | undefined => vm?.wiring?.ratios?.wire_p50;

/** Every chart the results allow, in report order; a benchmark without results has none. */
export function charts(input: ReportInput): Chart[] {
  const out: Chart[] = [];
  const dp = datapathOf(input);
  if (dp?.summary) {
    const rows = dp.summary.flatMap((p) =>
      (
        [
          ["TCP_RR", "p50", "rr_p50"],
          ["TCP_RR", "p99", "rr_p99"],
          ["TCP_CRR", "p50", "crr_p50"],
          ["TCP_CRR", "p99", "crr_p99"],
        ] as const
      ).flatMap(([test, pct, key]) => {
        const m = p.metrics[key];
        return m
          ? [
              {
                path: p.key,
                test,
                percentile: pct,
                "latency µs": round(m.median),
                min: round(m.min),
                max: round(m.max),
              },
            ]
          : [];
      }),
    );
    out.push({
      id: "datapath-latency",
      title: "Pod ↔ pod latency percentiles per path (lower is better)",
      caption: `TCP_RR and TCP_CRR p50/p99 in µs, median over the rounds (whiskers: min to max), per path: ${pathLegend(dp)}.`,
      source: "datapath",
      rows,
      spec: groupedBars({
        title: "Latency percentiles per path (µs)",
        rows,
        category: "path",
        value: "latency µs",
        series: "percentile",
        facet: "test",
        independentY: true,
        spread: { low: "min", high: "max" },
      }),
    });
    const tput = dp.summary.flatMap((p) =>
      (
        [
          ["TCP_STREAM Gbit/s", "stream_gbps"],
          ["TCP_RR per s", "rr_rate"],
          ["TCP_CRR per s", "crr_rate"],
        ] as const
      ).flatMap(([metric, key]) => {
        const m = p.metrics[key];
        return m
          ? [{ path: p.key, metric, value: round(m.median), min: round(m.min), max: round(m.max) }]
          : [];
      }),
    );
    out.push({
      id: "datapath-throughput",
      title: "Pod ↔ pod throughput and rates per path (higher is better)",
      caption: `One TCP stream's goodput, request/response and connect/request/response rates; medians (whiskers: min to max over the rounds). Paths: ${pathLegend(dp)}.`,
      source: "datapath",
      rows: tput,
      spec: groupedBars({
        title: "Throughput and rates per path",
        rows: tput,
        category: "path",
        value: "value",
        series: "path",
        facet: "metric",
        independentY: true,
        spread: { low: "min", high: "max" },
      }),
    });
  }
  const wiring = wiringOf(input);
  const vmRaw = pick<VmResult>(input, "vm")?.raw?.wiring;
  if (wiring?.raw) {
    const rows = [
      ...wiring.raw.wire.map((v) => ({ operation: "wire (veth)", ms: round(v) })),
      ...wiring.raw.unwire.map((v) => ({ operation: "unwire (veth)", ms: round(v) })),
    ];
    out.push({
      id: "wiring-distribution",
      title: "Wiring latency per pod (EndpointManager, this host)",
      caption:
        "Every pod's wire and unwire time in ms (ticks), with its box (quartiles, min to max); log scale.",
      source: "wiring",
      rows,
      spec: distribution({ title: "Wire / unwire per pod (ms)", rows, value: "ms", series: "operation" }),
    });
  }
  if (vmRaw) {
    const rows = (["wire", "unwire"] as const).flatMap((op) =>
      Object.entries(vmRaw[op]).flatMap(([mode, xs]) =>
        xs.map((v) => ({ operation: `${op} (${mode})`, ms: round(v) })),
      ),
    );
    out.push({
      id: "vm-wiring-distribution",
      title: "netkit vs veth wiring per pod (VM lane: QEMU TCG, emulated)",
      caption:
        "Every pod's wire and unwire time in ms in the netkit VM lane's guest; read only as a comparison.",
      source: "vm",
      rows,
      spec: distribution({
        title: "Wire / unwire per pod, emulated (ms)",
        rows,
        value: "ms",
        series: "operation",
      }),
    });
  }
  const cri = pick<CriResult>(input, "cri");
  if (cri?.lanes?.length) {
    const rows = cri.lanes.flatMap((l) =>
      (
        [
          ["RunPodSandbox", l.runPodSandbox],
          ["Stop+Remove", l.stopRemove],
        ] as const
      ).flatMap(([op, byVariant]) =>
        Object.entries(byVariant).flatMap(([variant, lat]) =>
          (["p50", "p99"] as const).map((pct) => ({
            call: `${op} ${pct}`,
            variant: `${variant} (lane ${l.lane})`,
            ms: round(lat[pct]),
          })),
        ),
      ),
    );
    out.push({
      id: "cri-latency",
      title: "CRI pod calls through containerd: nkit vs the bridge plugin vs a no-op CNI",
      caption:
        "RunPodSandbox and StopPodSandbox + RemovePodSandbox p50/p99 in ms, per CNI variant and containerd lane.",
      source: "cri",
      rows,
      spec: groupedBars({ title: "CRI calls (ms)", rows, category: "call", value: "ms", series: "variant" }),
    });
    const cni = cri.lanes.flatMap((l) =>
      l.cniWire
        ? [
            { plugin: `nkit-cni (lane ${l.lane})`, "ADD+DEL p50 ms": round(l.cniWire.nkitAddDel.p50) },
            {
              plugin: `bridge + host-local (lane ${l.lane})`,
              "ADD+DEL p50 ms": round(l.cniWire.bridgeAddDel.p50),
            },
          ]
        : [],
    );
    if (cni.length > 0) {
      out.push({
        id: "cni-add-del",
        title: "A pod network through CNI: ADD + DEL, exec'd as runtimes do",
        caption:
          "nkit-cni in wire mode against the bridge plugin with host-local IPAM, p50 in ms (lower is better).",
        source: "cri",
        rows: cni,
        spec: groupedBars({
          title: "CNI ADD+DEL p50 (ms)",
          rows: cni,
          category: "plugin",
          value: "ADD+DEL p50 ms",
          series: "plugin",
        }),
      });
    }
  }
  const churn = pick<ChurnResult>(input, "churn");
  if (churn?.summary) {
    const rows = (["nkit", "bridge"] as const).flatMap((v) => [
      { variant: v, phase: "created", "pods per s": round(churn.summary?.[v].createPerS ?? 0) },
      { variant: v, phase: "removed", "pods per s": round(churn.summary?.[v].removePerS ?? 0) },
    ]);
    out.push({
      id: "churn",
      title: "Pod churn through CRI: pods per second (higher is better)",
      caption: "Pods created, then removed, with 8 CRI calls in flight; median over the rounds.",
      source: "churn",
      rows,
      spec: groupedBars({
        title: "Churn (pods per s)",
        rows,
        category: "phase",
        value: "pods per s",
        series: "variant",
      }),
    });
  }
  const svc = pick<SideBySideResult>(input, "services");
  if (svc?.rows?.length) {
    const rows = svc.rows.flatMap((r) => [
      ...(r.rate === null
        ? []
        : [
            {
              path: r.path,
              services: r.services ?? 1,
              metric: `${r.test.toUpperCase()} per s`,
              value: round(r.rate),
            },
          ]),
      ...(r.p50_us === null || r.test !== "rr"
        ? []
        : [{ path: r.path, services: r.services ?? 1, metric: "RR p50 µs", value: round(r.p50_us) }]),
    ]);
    out.push({
      id: "services-scale",
      title: "Service VIPs as the number of services grows: nkit vs an iptables DNAT chain",
      caption:
        "TCP_RR and TCP_CRR rates and RR p50 through a VIP at 1, 1,000 and 10,000 services (log x), medians with whiskers from min to max over the rounds; `direct` skips the load-balancer.",
      source: "services",
      rows,
      spec: scaleLines({
        title: "Services: scale",
        rows,
        x: "services",
        value: "value",
        series: "path",
        facet: "metric",
        spread: { low: "min", high: "max" },
      }),
    });
  }
  const masq = pick<SideBySideResult>(input, "masq");
  if (masq?.rows?.length) {
    const rows = masq.rows.flatMap((r) =>
      r.gbps !== null && r.gbps !== undefined
        ? [{ path: r.path, metric: "TCP_STREAM Gbit/s", value: round(r.gbps) }]
        : r.rate === null
          ? []
          : [{ path: r.path, metric: `${r.test.toUpperCase()} per s`, value: round(r.rate) }],
    );
    out.push({
      id: "masquerade",
      title: "Masquerade: nkit's BPF SNAT vs iptables MASQUERADE (higher is better)",
      caption:
        "A pod reaching an outside server through the uplink: stream goodput and request rates, medians.",
      source: "masq",
      rows,
      spec: groupedBars({
        title: "Masquerade",
        rows,
        category: "path",
        value: "value",
        series: "path",
        facet: "metric",
        independentY: true,
      }),
    });
  }
  const load = pick<LoadResult>(input, "memory");
  if (load?.nkitd) {
    const n = load.nkitd;
    const s = n.settledRssMiB;
    const stages: [string, number, number | undefined][] = [
      ["idle", n.idleRssMiB, s?.idle],
      ["1,000 endpoints", n.rssAtEndpointsMiB, s?.endpoints],
      ["+ 10,000 services", n.rssAtBothMiB, s?.both],
      ["services only", n.rssAtServicesMiB, s?.services],
    ];
    const row = (stage: string, reading: string, mib: number) => ({ stage, reading, "RSS MiB": round(mib) });
    const after = "right after the stage";
    const quiet = "settled (after a quiet spell)";
    const rows: Record<string, string | number>[] = [
      ...stages.map(([stage, now]) => row(stage, after, now)),
      ...stages.flatMap(([stage, , settled]) => (settled === undefined ? [] : [row(stage, quiet, settled)])),
      row("peak", after, n.peakRssMiB),
    ];
    out.push({
      id: "memory",
      title: "nkitd resident memory under load (the dashed line: the 80 MB goal)",
      caption:
        "RSS of a real nkitd idle, at 1,000 endpoints, with 10,000 services too, once the endpoints left, and its peak: right after each stage and, where the run waited for it, after a quiet spell (V8 shrinks its heap only then).",
      source: "memory",
      rows,
      spec: groupedBars({
        title: "nkitd RSS (MiB)",
        rows,
        category: "stage",
        value: "RSS MiB",
        series: "reading",
        rule: round(80 / 1.048576),
      }),
    });
  }
  const vm = pick<VmResult>(input, "vm")?.ratios?.netkit_vs_veth;
  if (vm) {
    const names: Record<string, string> = {
      rr_rate: "TCP_RR rate ↑",
      rr_p50: "TCP_RR p50 ↓",
      crr_rate: "TCP_CRR rate ↑",
      crr_p50: "TCP_CRR p50 ↓",
      stream_gbps: "TCP_STREAM ↑",
    };
    const rows = Object.entries(names).flatMap(([k, label]) =>
      vm[k] === undefined ? [] : [{ metric: label, "netkit / veth": round(vm[k] as number) }],
    );
    out.push({
      id: "vm-ratios",
      title: "netkit / veth in the netkit VM lane (QEMU TCG: emulated, ratios only)",
      caption:
        "Ratios of medians from the same interleaved rounds; ↑ higher is better, ↓ lower is better; TCG cannot resolve less than ~20 %.",
      source: "vm",
      rows,
      spec: groupedBars({
        title: "netkit / veth (emulated)",
        rows,
        category: "metric",
        value: "netkit / veth",
        series: "metric",
        rule: 1,
      }),
    });
  }
  return out;
}

const esc = (s: string): string =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

function headlineMarkdown(h: readonly Headline[]): string[] {
  return [
    "| measure | nkit | goal | | why missed |",
    "|---|---|---|---|---|",
    ...h.map((x) => `| ${x.what} | ${x.value} | ${x.goal} | ${x.verdict} | ${x.why ?? ""} |`),
  ];
}

/** report.md: the headline table, then each chart as an image beside it with its caption. */
export function reportMarkdown(input: ReportInput, h: readonly Headline[], cs: readonly Chart[]): string {
  return [
    "# nkit performance report",
    "",
    `Generated ${input.generatedAt} from ${input.origin}. One page with the charts inline: [report.html](report.html).`,
    "Every figure is a median of interleaved rounds measured on this 2-core VM beside its baseline in the same run; the",
    "benchmarks' own reports (linked below each chart) hold the spread, the noise seen and the method.",
    "",
    "## Headline",
    "",
    ...headlineMarkdown(h),
    "",
    ...cs.flatMap((c) => [
      `## ${c.title}`,
      "",
      `![${c.title}](${c.id}.svg)`,
      "",
      `${c.caption}${input.details?.[c.source as ReportSource] ? ` Details: [${c.source}](${input.details[c.source as ReportSource]}).` : ""}`,
      "",
    ]),
  ].join("\n");
}

/** report.html: the same, as one self-contained page (the SVGs inline). */
export function reportHtml(
  input: ReportInput,
  h: readonly Headline[],
  cs: readonly { chart: Chart; svg: string }[],
): string {
  const rows = h
    .map(
      (x) =>
        `<tr><td>${esc(x.what)}</td><td>${esc(x.value)}</td><td>${esc(x.goal)}</td><td class="${x.verdict}">${x.verdict}</td><td>${esc(x.why ?? "")}</td></tr>`,
    )
    .join("\n");
  const figures = cs
    .map(
      ({ chart, svg }) =>
        `<section id="${chart.id}"><h2>${esc(chart.title)}</h2><figure>${svg.replace(/^<\?xml[^>]*>/, "")}<figcaption>${esc(chart.caption)}</figcaption></figure></section>`,
    )
    .join("\n");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>nkit performance report</title>
<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}
td.met{color:#161}td.missed{color:#a11;font-weight:bold}figure{margin:0 0 2em}figcaption{color:#555}</style>
</head><body>
<h1>nkit performance report</h1>
<p>Generated ${esc(input.generatedAt)} from ${esc(input.origin)}. Medians of interleaved rounds on a 2-core VM, each beside its baseline from the same run.</p>
<h2>Headline</h2>
<table><tr><th>measure</th><th>nkit</th><th>goal</th><th></th><th>why missed</th></tr>
${rows}
</table>
${figures}
</body></html>
`;
}

/** The suite names of the benchmarks and the `<prefix>-latest.json` each writes. */
const LATEST: Record<ReportSource, string> = {
  datapath: "datapath",
  wiring: "wiring",
  cri: "cri",
  churn: "churn",
  services: "services",
  masq: "masquerade",
  memory: "load",
  vm: "vm",
};

/** The report's input from each benchmark's latest results in `dir` (run at different times). */
export function inputFromLatest(dir: string): ReportInput {
  const results: ReportInput["results"] = {};
  const details: NonNullable<ReportInput["details"]> = {};
  for (const [source, prefix] of Object.entries(LATEST) as [ReportSource, string][]) {
    const file = join(dir, `${prefix}-latest.json`);
    if (!existsSync(file)) continue;
    results[source] = JSON.parse(readFileSync(file, "utf8")) as unknown;
    details[source] = `../${prefix}-latest.md`;
  }
  return {
    origin: "the latest results of each benchmark in bench/results (each from its own run)",
    generatedAt: new Date().toISOString(),
    results,
    details,
  };
}

/** The report's input from a suite run's JSON (`npm run bench`). */
export function inputFromSuite(file: string): ReportInput {
  const doc = JSON.parse(readFileSync(file, "utf8")) as {
    startedAt: string;
    quick: boolean;
    benchmarks: { name: string; ok: boolean; result?: unknown }[];
  };
  const results: ReportInput["results"] = {};
  const details: NonNullable<ReportInput["details"]> = {};
  for (const b of doc.benchmarks) {
    if (!b.ok || b.result === undefined || !(b.name in LATEST)) continue;
    results[b.name as ReportSource] = b.result;
    // The suite's Markdown holds every benchmark's own report.
    details[b.name as ReportSource] = `../${basename(file, ".json")}.md`;
  }
  return {
    origin: `the suite run of ${doc.startedAt}${doc.quick ? " (quick)" : ""} (${basename(file)})`,
    generatedAt: new Date().toISOString(),
    results,
    details,
  };
}

/** Renders every chart and writes report.md, report.html and <chart>.svg into `dir`. */
export async function writeReport(
  input: ReportInput,
  dir: string,
): Promise<{ headline: string[]; charts: Chart[] }> {
  const cs = charts(input);
  const h = explainMisses(headlines(input), loadMissReasons());
  const rendered = [];
  for (const chart of cs) rendered.push({ chart, svg: await renderSvg(chart.spec) });
  mkdirSync(dir, { recursive: true });
  // A chart a newer report no longer draws must not linger beside it.
  for (const f of readdirSync(dir)) if (f.endsWith(".svg")) rmSync(join(dir, f));
  for (const { chart, svg } of rendered) writeFileSync(join(dir, `${chart.id}.svg`), svg);
  writeFileSync(join(dir, "report.md"), reportMarkdown(input, h, cs));
  writeFileSync(join(dir, "report.html"), reportHtml(input, h, rendered));
  return { headline: headlineMarkdown(h), charts: cs };
}

const README_START = "<!-- bench-headline:start -->";
const README_END = "<!-- bench-headline:end -->";

/** Puts the headline table between README's markers; false when README has none. */
export function refreshReadme(readme: string, headline: readonly string[], link: string): boolean {
  const text = readFileSync(readme, "utf8");
  const a = text.indexOf(README_START);
  const b = text.indexOf(README_END);
  if (a < 0 || b < a) return false;
  const block = [README_START, "", ...headline, "", `Charts and method: [${link}](${link}).`, "", README_END];
  writeFileSync(readme, text.slice(0, a) + block.join("\n") + text.slice(b + README_END.length));
  return true;
}
