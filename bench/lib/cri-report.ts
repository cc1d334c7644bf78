// The CRI benchmark's numbers: latency summaries, target verdicts (PASS/MISS, never asserted) and the
// Markdown report.
import { quantile, round } from "./stats.js";

export interface LatencyMs {
  n: number;
  p50: number;
  p90: number;
  p99: number;
  min: number;
  max: number;
  mean: number;
}

export function latency(samplesMs: readonly number[]): LatencyMs {
  const n = samplesMs.length;
  const mean = n === 0 ? Number.NaN : samplesMs.reduce((s, x) => s + x, 0) / n;
  return {
    n,
    p50: round(quantile(samplesMs, 0.5), 3),
    p90: round(quantile(samplesMs, 0.9), 3),
    p99: round(quantile(samplesMs, 0.99), 3),
    min: round(n ? Math.min(...samplesMs) : Number.NaN, 3),
    max: round(n ? Math.max(...samplesMs) : Number.NaN, 3),
    mean: round(mean, 3),
  };
}

export type CniVariant = "nkit" | "bridge" | "noop";

export const VARIANTS: Record<CniVariant, { label: string; detail: string }> = {
  nkit: {
    label: "nkit (ipam + NRI)",
    detail:
      "conflist [nkit-cni mode ipam, loopback] + nkitd's NRI plugin wiring the sandbox at RunPodSandbox (veth + tcx)",
  },
  bridge: {
    label: "CNI bridge",
    detail:
      "containernetworking-plugins bridge + host-local on a private bridge and /24 (no gateway, no masquerade)",
  },
  noop: {
    label: "no-op CNI",
    detail:
      "conflist [stub, loopback]: a /bin/sh stub that reports one IP for eth0 and creates nothing (no NRI plugin)",
  },
};

export interface LaneResult {
  lane: string;
  containerdVersion: string;
  /** CRI RunPodSandbox, end to end, per variant (ms). */
  runPodSandbox: Record<CniVariant, LatencyMs>;
  /** StopPodSandbox + RemovePodSandbox, per variant (ms). */
  stopRemove: Record<CniVariant, LatencyMs>;
  /** nkitd's NRI RunPodSandbox handler (wiring), per pod, from nkit_endpoint_wiring_duration_seconds_sum. */
  nriRun: LatencyMs;
  /** `nkit-cni` ADD / DEL (mode ipam) exec'd directly against the running nkitd (ms, spawn included). */
  cniAdd: LatencyMs;
  cniDel: LatencyMs;
  /** A whole pod network through CNI: nkit-cni in wire mode vs bridge + host-local, exec'd (ms). */
  cniWire?: CniWireResult;
  errors: string[];
}

export interface CniWireResult {
  /** Mean time nkitd spent serving one counted ADD and DEL (its request histogram). */
  nkitd?: { addMs: number; delMs: number; wireMs: number; unwireMs: number };
  /** The shim spawned for VERSION (answered without nkitd): the floor of any exec'd call. */
  shimVersion?: LatencyMs;
  nkitAdd: LatencyMs;
  nkitDel: LatencyMs;
  nkitAddDel: LatencyMs;
  bridgeAdd: LatencyMs;
  bridgeDel: LatencyMs;
  bridgeAddDel: LatencyMs;
}

export interface Target {
  lane: string;
  name: string;
  want: string;
  got: string;
  pass: boolean;
}

export function evaluate(r: LaneResult): Target[] {
  const target = (name: string, want: string, got: string, pass: boolean): Target => ({
    lane: r.lane,
    name,
    want,
    got,
    pass,
  });
  const nk = r.runPodSandbox.nkit;
  const br = r.runPodSandbox.bridge;
  // NRI handler: absolute limits; RunPodSandbox: nkit against the bridge plugin.
  const limits = [
    ["p50", 5],
    ["p99", 20],
  ] as const;
  return [
    ...limits.map(([q, ms]) =>
      target(`NRI RUN handler ${q}`, `≤ ${ms} ms`, `${r.nriRun[q]} ms`, r.nriRun[q] <= ms),
    ),
    ...limits.map(([q]) =>
      target(
        `RunPodSandbox ${q}, nkit vs bridge`,
        "nkit ≤ bridge",
        `${nk[q]} vs ${br[q]} ms`,
        nk[q] <= br[q],
      ),
    ),
    target(
      "Stop+Remove p50, nkit vs bridge",
      "nkit ≤ bridge",
      `${r.stopRemove.nkit.p50} vs ${r.stopRemove.bridge.p50} ms`,
      r.stopRemove.nkit.p50 <= r.stopRemove.bridge.p50,
    ),
    ...(r.cniWire
      ? [
          target(
            "CNI ADD+DEL p50 (wire mode), nkit / bridge plugin",
            "≤ 0.25",
            `${(r.cniWire.nkitAddDel.p50 / r.cniWire.bridgeAddDel.p50).toFixed(2)} (${r.cniWire.nkitAddDel.p50} vs ${r.cniWire.bridgeAddDel.p50} ms)`,
            r.cniWire.nkitAddDel.p50 <= 0.25 * r.cniWire.bridgeAddDel.p50,
          ),
        ]
      : []),
  ];
}

export interface CriReport {
  startedAt: string;
  finishedAt: string;
  host: { cpus: number; kernel: string; loadavgStart: number[]; loadavgEnd: number[] };
  config: { pods: number; warmup: number; cniCalls: number; interleaved: true };
  lanes: LaneResult[];
  targets: Target[];
}

const row = (cells: (string | number)[]): string => `| ${cells.join(" | ")} |`;

function latencyTable(title: string, rows: [string, LatencyMs][]): string[] {
  return [
    `**${title}** (ms)`,
    "",
    row(["", "n", "p50", "p90", "p99", "min", "max", "mean"]),
    row(["---", "--:", "--:", "--:", "--:", "--:", "--:", "--:"]),
    ...rows.map(([k, l]) => row([k, l.n, l.p50, l.p90, l.p99, l.min, l.max, l.mean])),
    "",
  ];
}

/** One row per CNI variant, in VARIANTS order. */
const perVariant = (m: Record<CniVariant, LatencyMs>): [string, LatencyMs][] =>
  (Object.keys(VARIANTS) as CniVariant[]).map((k) => [VARIANTS[k].label, m[k]]);

export function markdown(r: CriReport): string {
  const out: string[] = [
    "# CRI pod start benchmark (nkit vs bridge vs no-op CNI)",
    "",
    `Run ${r.startedAt} → ${r.finishedAt}; ${r.host.cpus} CPUs, kernel ${r.host.kernel}, load average ` +
      `${r.host.loadavgStart.map((x) => x.toFixed(2)).join("/")} at start, ` +
      `${r.host.loadavgEnd.map((x) => x.toFixed(2)).join("/")} at the end (shared host).`,
    "",
    `${r.config.pods} pods per variant (+${r.config.warmup} warm-up pods not counted), sequential, each pod ` +
      "stopped and removed before the next; the variants are interleaved pod by pod, each on its own " +
      `private containerd. ${r.config.cniCalls} direct \`nkit-cni\` ADD/DEL calls.`,
    "",
    "Variants:",
    "",
    ...Object.values(VARIANTS).map((v) => `- **${v.label}**: ${v.detail}`),
    "",
    "## Targets (reported, never asserted)",
    "",
    row(["lane", "target", "want", "got", "verdict"]),
    row(["---", "---", "---", "---", "---"]),
    ...r.targets.map((t) => row([t.lane, t.name, t.want, t.got, t.pass ? "PASS" : "MISS"])),
    "",
  ];
  for (const l of r.lanes) {
    out.push(`## containerd ${l.containerdVersion} (lane ${l.lane})`, "");
    out.push(...latencyTable("CRI RunPodSandbox, end to end", perVariant(l.runPodSandbox)));
    out.push(...latencyTable("StopPodSandbox + RemovePodSandbox", perVariant(l.stopRemove)));
    out.push(
      ...latencyTable("nkitd", [
        ["NRI RunPodSandbox handler (wire)", l.nriRun],
        ["nkit-cni ADD (ipam, exec'd)", l.cniAdd],
        ["nkit-cni DEL (ipam, exec'd)", l.cniDel],
      ]),
    );
    if (l.cniWire) {
      const w = l.cniWire;
      out.push(
        ...latencyTable("A pod network through CNI, exec'd: nkit-cni wire mode vs bridge + host-local", [
          ["nkit-cni ADD (wire: the whole wiring)", w.nkitAdd],
          ["nkit-cni DEL", w.nkitDel],
          ["nkit-cni ADD + DEL", w.nkitAddDel],
          ["bridge + host-local ADD", w.bridgeAdd],
          ["bridge + host-local DEL", w.bridgeDel],
          ["bridge + host-local ADD + DEL", w.bridgeAddDel],
          ...(w.shimVersion
            ? [["nkit-cni VERSION (the spawn alone)", w.shimVersion] as [string, LatencyMs]]
            : []),
        ]),
      );
      if (w.nkitd) {
        out.push(
          `Inside nkitd (mean per call, its histograms): ADD ${w.nkitd.addMs} ms (the wiring ${w.nkitd.wireMs} ms of it), DEL ${w.nkitd.delMs} ms (the unwiring ${w.nkitd.unwireMs} ms of it).`,
          "",
        );
      }
    }
    if (l.errors.length > 0) out.push("Errors:", "", ...l.errors.map((e) => `- ${e}`), "");
  }
  out.push(
    "## Method",
    "",
    "- RunPodSandbox: wall time of the CRI call from the benchmark (gRPC over the private socket), i.e.",
    "  netns, CNI ADD chain, sandbox task, NRI (nkit only: nkitd's RUN handler), start.",
    "- NRI RUN handler: per pod, the increase of nkitd's `nkit_endpoint_wiring_duration_seconds_sum`",
    '  `{op="wire",result="ok"}` (scraped from `metrics.listen` before and after each pod; the RUN',
    "  handler is that timed wiring plus a counter increment).",
    "- nkit-cni ADD/DEL: the C shim spawned with the CNI environment and the conflist's plugin config",
    "  on stdin, against the same nkitd, for container ids that are not pods (ipam mode only reserves",
    "  and releases addresses). Includes the process spawn.",
    "",
  );
  return out.join("\n");
}
