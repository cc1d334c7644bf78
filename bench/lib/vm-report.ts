// The VM benchmark's host half (`node bench/dist/bench/vm.js report`, run by scripts/vm/bench.sh
// after the guest is gone): cuts the guest's data block out of the console log, computes medians and
// ratios (netkit vs veth vs loopback) and writes bench/results/vm-<ts>.{json,md} and vm-latest.*.
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { RESULTS_DIR } from "./paths.js";
import { METRICS, type MetricKey, type PathSummary, summarize, VALUE_COLS } from "./report.js";
import { type LatencyStats, latencyStats } from "./stats.js";
import { decodeData, type HostTrace, type VmBenchData, type VmMode, type VmRunRecord } from "./vm-data.js";

const log = (m: string) => process.stderr.write(`${m}\n`);

interface VmRatios {
  /** netkit median / veth median per metric. */
  netkit_vs_veth: Partial<Record<MetricKey, number>>;
  netkit_vs_loopback: Partial<Record<MetricKey, number>>;
  veth_vs_loopback: Partial<Record<MetricKey, number>>;
}

interface VmReport {
  title: string;
  note: string;
  startedAt: string;
  command: string;
  /** Exit status of the guest job as run-tests.sh reported it (0 = complete). */
  jobStatus: number;
  complete: boolean;
  host: Record<string, string | number>;
  guest: VmBenchData["env"];
  config: VmBenchData["config"];
  guestStartedAt: string;
  guestDurationS: number;
  phases: VmBenchData["phases"];
  summary: PathSummary[];
  ratios: VmRatios;
  wiring?: {
    pods: number;
    order: string;
    netnsAdd: LatencyStats;
    wire: Record<VmMode, LatencyStats>;
    unwire: Record<VmMode, LatencyStats>;
    /** netkit / veth, p50 and p99. */
    ratios: { wire_p50: number; wire_p99: number; unwire_p50: number; unwire_p99: number };
  };
  counters: VmBenchData["counters"];
  notes: string[];
  raw: { runs: VmBenchData["runs"]; wiring?: VmBenchData["wiring"]; hostTrace?: HostTrace };
}

const TCG_NOTE =
  "QEMU TCG, not hardware: the guest (Debian's 6.12 cloud kernel, the netkit VM lane) runs under software CPU " +
  "emulation without KVM on a shared 2-core host, so every guest instruction is translated and absolute numbers " +
  "are far below real hardware and meaningless on their own. Only ratios between paths measured in the same " +
  "interleaved rounds are informative, and even they are distorted: TCG inflates CPU-bound work (BPF, the network " +
  "stack, syscalls) unevenly, the two vCPUs are host threads competing with everything else on the host, and " +
  "guest-side noise accounting cannot see the host's load. Treat differences under ~20% as noise.";

/**
 * Host noise per measurement: the host's CPU taken by anything but this run's process tree over the
 * measurement's window (guest clock mapped to host time with the smallest observed offset), and the
 * resulting clean flag (guest clean and host others ≤ threshold).
 */
function applyHostTrace(runs: VmRunRecord[], trace: HostTrace, thresholdPct: number): string {
  if (trace.clockOffsetsMs.length === 0 || trace.samples.length < 2) {
    return "No host trace (no NKVM-CLOCK lines or no samples): host noise unknown, guest-side noise only.";
  }
  const offset = Math.min(...trace.clockOffsetsMs);
  const s = trace.samples;
  let tagged = 0;
  for (const r of runs) {
    r.guestClean = r.clean;
    if (!r.endedAt || !r.noise) continue;
    const end = Date.parse(r.endedAt) + offset;
    const start = end - r.noise.seconds * 1000;
    // Sample intervals overlapping the window, weighted by their overlap.
    let total = 0;
    let busy = 0;
    let ours = 0;
    let n = 0;
    for (let i = 1; i < s.length; i++) {
      const a = s[i - 1]!;
      const b = s[i]!;
      const ov = Math.min(b.t, end) - Math.max(a.t, start);
      if (ov <= 0 || b.t <= a.t) continue;
      const w = ov / (b.t - a.t);
      const dt = b.total - a.total;
      total += w * dt;
      busy += w * (dt - (b.idle - a.idle));
      ours += w * (b.ours - a.ours);
      n++;
    }
    if (n === 0 || total <= 0) continue;
    const othersPct = Math.max(0, (100 * (busy - ours)) / total);
    r.host = { othersPct, oursPct: (100 * ours) / total, windowS: (end - start) / 1000, samples: n };
    r.clean = r.clean && othersPct <= thresholdPct;
    tagged++;
  }
  const spread = Math.max(...trace.clockOffsetsMs) - offset;
  return (
    `Host noise: ${tagged} of ${runs.length} measurements matched to ${trace.samples.length} host samples ` +
    `(every ${trace.intervalMs} ms); guest→host clock offset ${(offset / 1000).toFixed(3)} s ` +
    `(spread of ${trace.clockOffsetsMs.length} readings ${spread.toFixed(0)} ms, mostly console latency).`
  );
}

function ratio(a: number | undefined, b: number | undefined): number | undefined {
  return a !== undefined && b !== undefined && b !== 0 ? a / b : undefined;
}

function ratiosBetween(
  x: PathSummary | undefined,
  y: PathSummary | undefined,
): Partial<Record<MetricKey, number>> {
  const out: Partial<Record<MetricKey, number>> = {};
  for (const k of VALUE_COLS) {
    const r = ratio(x?.metrics[k]?.median, y?.metrics[k]?.median);
    if (r !== undefined) out[k] = r;
  }
  return out;
}

function buildReport(
  d: VmBenchData,
  o: {
    startedAt: string;
    command: string;
    jobStatus: number;
    host: Record<string, string | number>;
    trace?: HostTrace;
  },
): VmReport {
  const notes = [...d.notes];
  if (o.trace) notes.push(applyHostTrace(d.runs, o.trace, d.config.cleanThresholdPct));
  else notes.push("No host trace: a measurement's cleanliness is judged inside the guest only.");
  const summary = summarize(d.paths, d.runs);
  const get = (k: string) => summary.find((s) => s.key === k);
  if (d.error) notes.push(`The guest run failed part-way and is incomplete: ${d.error}`);
  const failed = d.runs.filter((r) => r.error);
  if (failed.length) notes.push(`${failed.length} measurement(s) failed (see the runs below).`);
  if (summary.some((s) => Object.values(s.metrics).some((m) => m.basis === "all"))) {
    notes.push("† = no clean run for that path/test (host or guest noise): median of all its runs.");
  }
  for (const [k, c] of Object.entries(d.counters)) {
    const drops = Object.entries(c)
      .filter(([n]) => n.startsWith("DROP"))
      .reduce((a, [, v]) => a + v, 0);
    const shown = Object.entries(c)
      .filter(([, v]) => v > 0)
      .map(([n, v]) => `${n} ${v.toLocaleString("en-US")}`)
      .join(", ");
    notes.push(`${k} program counters over the whole run (both pods): ${shown || "none"}; ${drops} dropped.`);
  }
  const r: VmReport = {
    title: "nkit VM benchmark: netkit vs veth vs loopback (QEMU TCG)",
    note: TCG_NOTE,
    startedAt: o.startedAt,
    command: o.command,
    jobStatus: o.jobStatus,
    complete: o.jobStatus === 0 && !d.error && failed.length === 0,
    host: o.host,
    guest: d.env,
    config: d.config,
    guestStartedAt: d.startedAt,
    guestDurationS: d.durationS,
    phases: d.phases,
    summary,
    ratios: {
      netkit_vs_veth: ratiosBetween(get("netkit"), get("veth")),
      netkit_vs_loopback: ratiosBetween(get("netkit"), get("loopback")),
      veth_vs_loopback: ratiosBetween(get("veth"), get("loopback")),
    },
    counters: d.counters,
    notes,
    raw: {
      runs: d.runs,
      ...(d.wiring ? { wiring: d.wiring } : {}),
      ...(o.trace ? { hostTrace: o.trace } : {}),
    },
  };
  if (d.wiring) {
    const w = d.wiring;
    const wire = { netkit: latencyStats(w.wire.netkit), veth: latencyStats(w.wire.veth) };
    const unwire = { netkit: latencyStats(w.unwire.netkit), veth: latencyStats(w.unwire.veth) };
    r.wiring = {
      pods: w.pods,
      order: w.order,
      netnsAdd: latencyStats(w.netnsAdd),
      wire,
      unwire,
      ratios: {
        wire_p50: wire.netkit.p50_ms / wire.veth.p50_ms,
        wire_p99: wire.netkit.p99_ms / wire.veth.p99_ms,
        unwire_p50: unwire.netkit.p50_ms / unwire.veth.p50_ms,
        unwire_p99: unwire.netkit.p99_ms / unwire.veth.p99_ms,
      },
    };
  }
  return r;
}

// ---------- Markdown ----------

function fx(x: number | undefined, digits = 2): string {
  return x === undefined || Number.isNaN(x) ? "–" : x.toFixed(digits);
}

function fmtValue(k: MetricKey, x: number | undefined): string {
  if (x === undefined) return "–";
  if (k === "stream_gbps") return x.toFixed(3);
  if (k.endsWith("_rate") || k === "stream_retrans") return Math.round(x).toLocaleString("en-US");
  return x.toFixed(0);
}

function valueCell(s: PathSummary | undefined, k: MetricKey): string {
  const m = s?.metrics[k];
  if (!m) return "–";
  return `${fmtValue(k, m.median)} (${fmtValue(k, m.min)}–${fmtValue(k, m.max)}) [${m.n}]${m.basis === "all" ? "†" : ""}`;
}

function ratioCell(x: number | undefined, k: MetricKey): string {
  if (x === undefined || Number.isNaN(x)) return "–";
  const s = x.toFixed(2);
  if (k === "stream_retrans") return s;
  // Bold when the difference is beyond the ~20% TCG noise band.
  return Math.abs(x - 1) >= 0.2 ? `**${s}**` : s;
}

function metricLabel(k: MetricKey): string {
  const m = METRICS[k];
  const arrow = k === "stream_retrans" ? "" : m.better === "higher" ? " ↑" : " ↓";
  return `${m.label}${arrow}`;
}

function ratioTable(r: VmReport): string {
  const get = (k: string) => r.summary.find((s) => s.key === k);
  const [a, b, c] = [get("loopback"), get("netkit"), get("veth")];
  return [
    "| metric | (a) loopback | (b) netkit | (c) veth | **netkit / veth** | netkit / loopback | veth / loopback |",
    "|---|---|---|---|---|---|---|",
    ...VALUE_COLS.map(
      (k) =>
        `| ${metricLabel(k)} | ${valueCell(a, k)} | ${valueCell(b, k)} | ${valueCell(c, k)} | ` +
        `${ratioCell(r.ratios.netkit_vs_veth[k], k)} | ${ratioCell(r.ratios.netkit_vs_loopback[k], k)} | ` +
        `${ratioCell(r.ratios.veth_vs_loopback[k], k)} |`,
    ),
  ].join("\n");
}

function latRow(name: string, l: LatencyStats): string {
  return `| ${name} | ${l.n} | ${fx(l.p50_ms, 1)} | ${fx(l.p99_ms, 1)} | ${fx(l.mean_ms, 1)} | ${fx(l.min_ms, 1)}–${fx(l.max_ms, 1)} |`;
}

function wiringTable(r: VmReport): string {
  const w = r.wiring;
  if (!w) return "(no wiring measurement)";
  return [
    "| operation (per pod) | n | p50 ms | p99 ms | mean ms | min–max ms |",
    "|---|---|---|---|---|---|",
    latRow("`EndpointManager.wire`, netkit", w.wire.netkit),
    latRow("`EndpointManager.wire`, veth", w.wire.veth),
    latRow("`EndpointManager.unwire`, netkit", w.unwire.netkit),
    latRow("`EndpointManager.unwire`, veth", w.unwire.veth),
    latRow("`ip netns add` (for scale; not part of wiring)", w.netnsAdd),
    "",
    `netkit / veth: wire p50 **${fx(w.ratios.wire_p50)}**, p99 ${fx(w.ratios.wire_p99)}; ` +
      `unwire p50 **${fx(w.ratios.unwire_p50)}**, p99 ${fx(w.ratios.unwire_p99)} (< 1: netkit is faster).`,
  ].join("\n");
}

function runsTable(r: VmReport): string {
  const rows = r.raw.runs.map((x) => {
    let v: string;
    if (x.error) v = `ERROR ${x.error}`;
    else if (x.test === "stream")
      v = `${fx(x.sample?.gbps, 3)} Gbit/s, ${x.sample?.retransmits ?? "–"} retrans`;
    else {
      v = `${Math.round(x.sample?.rate ?? 0).toLocaleString("en-US")}/s, p50 ${fx(x.sample?.p50_us, 0)} µs, p99 ${fx(x.sample?.p99_us, 0)} µs`;
    }
    const noise = `${x.host ? fx(x.host.othersPct, 0) : "–"} / ${x.noise ? fx(x.noise.othersPct, 0) : "–"}`;
    const ctr = x.counters
      ? Object.entries(x.counters)
          .map(([k, n]) => `${k} ${n}`)
          .join(", ")
      : "";
    return `| ${x.round} | ${x.path} | ${x.test} | ${v} | ${noise}${x.clean ? "" : " (unclean)"} | ${ctr} |`;
  });
  return [
    "| round | path | test | result | others % host / guest | program counters |",
    "|---|---|---|---|---|---|",
    ...rows,
  ].join("\n");
}

function markdown(r: VmReport): string {
  const md: string[] = [];
  const g = r.guest;
  md.push(`# ${r.title}`, "");
  md.push(`> **${r.note.split(":")[0]}**:${r.note.slice(r.note.indexOf(":") + 1)}`, "");
  if (!r.complete) {
    md.push(
      `**Incomplete run** (job status ${r.jobStatus}): see the notes at the end. Numbers below cover what was measured.`,
      "",
    );
  }
  md.push(
    `Run ${r.startedAt}, command \`${r.command}\`: ${r.config.rounds} rounds × ${r.config.seconds} s per measurement, ` +
      "paths interleaved (path and test order rotated every round), client on vCPU0 / server on vCPU1 under " +
      `SCHED_FIFO 10; ${r.config.pods} pods per mode wired for the wiring latency. Guest run ${fx(r.guestDurationS, 1)} s ` +
      `(${Object.entries(r.phases)
        .map(([k, v]) => `${k} ${fx(v, 1)} s`)
        .join(", ")}).`,
    "",
    `Guest: kernel ${g.kernel} · ${g.cpus} vCPUs (${g.cpu}) · node ${g.node} · iperf3 ${g.iperf3} · ${g.iproute2}`,
    "",
    `Host: ${Object.entries(r.host)
      .map(([k, v]) => `${k} ${v}`)
      .join(" · ")}`,
    "",
  );
  md.push(
    "## Pod ↔ pod: netkit vs veth vs loopback",
    "",
    `Clean measurements: ${r.raw.runs.filter((x) => x.clean).length} of ${r.raw.runs.length}. ` +
      "Values: median (min–max) [n measurements used], in guest time. Ratios divide medians; ↑ = higher is better " +
      "(rates, throughput), ↓ = lower is better (latency). Medians of clean measurements (see below). **Bold** ratios differ from 1 by ≥ 20%, the least " +
      "this TCG setup can resolve. TCP_STREAM is one iperf3 stream (receiver goodput).",
    "",
    ratioTable(r),
    "",
  );
  md.push(
    "## Wiring latency per pod",
    "",
    `${r.wiring?.pods ?? 0} pods per mode, netns pre-created, wired one at a time (${r.wiring?.order ?? "–"}), then ` +
      "unwired the same way, each by the same `EndpointManager` that carried the traffic above. With 20 pods, p99 is " +
      "essentially the maximum.",
    "",
    wiringTable(r),
    "",
  );
  md.push(
    "## Paths",
    "",
    ...r.summary.map((p) => `- **${p.tag} ${p.label}**: ${p.detail}`),
    "",
    "## Every measurement",
    "",
    "`others %`: CPU taken during the measurement by processes other than this run's, on the host (outside QEMU: " +
      "they stall the vCPUs) and inside the guest, in % of all CPUs. A measurement is clean when both are " +
      `≤ ${r.config.cleanThresholdPct}%; medians use clean measurements only (all of them, marked †, when none is clean).`,
    "",
    runsTable(r),
    "",
  );
  if (r.notes.length) md.push("## Notes", "", ...r.notes.map((n) => `- ${n}`), "");
  return md.join("\n");
}

// ---------- CLI ----------

function stamp(iso: string): string {
  return iso.replace(/\.\d+Z$/, "Z").replace(/:/g, "-");
}

export async function reportMain(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      log: { type: "string" },
      "job-status": { type: "string" },
      "host-trace": { type: "string" },
      started: { type: "string" },
      "load-start": { type: "string" },
      "vm-wall": { type: "string" },
      qemu: { type: "string" },
      command: { type: "string" },
      out: { type: "string" },
    },
  });
  if (!values.log) throw new Error("report: --log FILE (the guest's console log) is required");
  const text = readFileSync(values.log, "latin1");
  let data: VmBenchData;
  try {
    data = decodeData(text);
  } catch (e) {
    log(`vm bench report: ${e instanceof Error ? e.message : String(e)}; no results written`);
    return 1;
  }
  const jobStatus = Number(values["job-status"] ?? "0");
  const host: Record<string, string | number> = {
    kernel: readFileSync("/proc/sys/kernel/osrelease", "utf8").trim(),
    cpus: cpus().length,
    cpu: cpus()[0]?.model ?? "?",
    "loadavg at start": values["load-start"] ?? "?",
    "loadavg at end": loadavg()
      .map((x) => x.toFixed(2))
      .join(" "),
  };
  if (values["vm-wall"]) host["VM wall s"] = Number(values["vm-wall"]);
  if (values.qemu) host.qemu = values.qemu;
  const startedAt = values.started ?? data.startedAt;
  let trace: HostTrace | undefined;
  if (values["host-trace"]) {
    try {
      trace = JSON.parse(readFileSync(values["host-trace"], "utf8")) as HostTrace;
    } catch (e) {
      log(
        `vm bench report: host trace unreadable (${e instanceof Error ? e.message : String(e)}); ignoring it`,
      );
    }
  }
  const r = buildReport(data, {
    startedAt,
    command: values.command ?? "npm run bench:vm",
    jobStatus,
    host,
    ...(trace ? { trace } : {}),
  });
  const out = values.out ?? RESULTS_DIR;
  mkdirSync(out, { recursive: true });
  const base = `vm-${stamp(startedAt)}`;
  const md = markdown(r);
  writeFileSync(join(out, `${base}.json`), `${JSON.stringify(r, null, 2)}\n`);
  writeFileSync(join(out, `${base}.md`), md);
  if (r.complete) {
    copyFileSync(join(out, `${base}.json`), join(out, "vm-latest.json"));
    copyFileSync(join(out, `${base}.md`), join(out, "vm-latest.md"));
  }
  process.stdout.write(`\n${md}\n`);
  log(
    `results: ${join(out, `${base}.{json,md}`)}${r.complete ? " (+ vm-latest.{json,md})" : " (incomplete: vm-latest not updated)"}`,
  );
  return r.complete ? 0 : 1;
}
