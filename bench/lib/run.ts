// The datapath benchmark run: set up every path at once, interleave measurements across rounds,
// account for noise, measure wiring, write JSON + Markdown into bench/results/.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { bridgeTopology, routedTopology } from "./baselines.js";
import { Cleanup, cleanupOnSignals } from "./cleanup.js";
import { waitForIdle } from "./cpu.js";
import type { TestKind } from "./measure.js";
import { nkitPair, packetCounters } from "./nkit.js";
import { ADDON, DATAPATH_OBJ, README, RESULTS_DIR, ROOT, RR_BIN, TOOLS_DIR } from "./paths.js";
import {
  evaluateTargets,
  markdown,
  type PathInfo,
  type ReportInput,
  type RunRecord,
  readmeBlock,
  summarize,
} from "./report.js";
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
import { type WiringResult, wiringBench } from "./wiring.js";

const log = (m: string) => process.stderr.write(`${m}\n`);

const USAGE = `usage: npm run bench -- [options]   (root; builds what it needs)

  --quick               smoke run (~1 min): 1 round x 2 s, 20 pods wired
  --rounds N            rounds; every path is measured once per round      [3]   env BENCH_ROUNDS
  --seconds S           seconds per TCP_RR / TCP_CRR / TCP_STREAM run       [4]   env BENCH_SECONDS
  --pods N              pods wired/unwired for the wiring latency           [100] env BENCH_PODS
  --bridge-pods N       pods attached with the iproute2 bridge recipe       [20]
  --paths a,b,..        subset of: ${"loopback,nkit,nkit-nobig,nkit-nosteer,bridge,routed,routed-big"}
  --clean-pct P         a run is clean if others + steal used <= P% of the machine [15] env BENCH_CLEAN_PCT
  --idle-wait S         wait up to S seconds for the machine to go idle before each run [3]
  --retries N           re-run an unclean measurement up to N times (budget: 25% extra runs) [1]
  --no-wiring           skip the wiring benchmark
  --no-datapath         skip the traffic benchmark
  --out DIR             results directory                                   [bench/results]
`;

interface Config {
  quick: boolean;
  rounds: number;
  seconds: number;
  pods: number;
  bridgePods: number;
  paths: string[];
  cleanThresholdPct: number;
  idleWaitS: number;
  retries: number;
  wiring: boolean;
  datapath: boolean;
  out: string;
}

const ALL_PATHS: PathInfo[] = [
  {
    key: "loopback",
    tag: "(a)",
    label: "host loopback",
    detail: "client and server in the root netns over 127.0.0.1 (lo, MTU 65536): the limit.",
  },
  {
    key: "nkit",
    tag: "(b)",
    label: "nkit veth + tc, BIG TCP",
    detail:
      "EndpointManager in veth mode (this kernel has no netkit) in the root netns, two pods in their own netns, " +
      "wired with IPAM addresses; from-container program as a cls_bpf ingress filter redirects pod→pod with bpf_redirect_peer. " +
      "BIG TCP on (nkit's default: GSO/GRO max 192 KiB on both ends). MTU 1500.",
  },
  {
    key: "nkit-nobig",
    tag: "(b')",
    label: "nkit veth + tc, BIG TCP off",
    detail:
      "as (b), but a second EndpointManager with bigTcp: false (64 KiB GSO), for a like-for-like comparison with (c)/(d).",
  },
  {
    key: "nkit-nosteer",
    tag: "(b'')",
    label: "nkit veth + tc, BIG TCP, no flow steering",
    detail:
      "as (b), but with flowSteering: false (no RPS on the host ends): what a pod sends is queued to the backlog of " +
      "the CPU that sent it, as plain veth does; shows what steering costs and what it saves (retransmits).",
  },
  {
    key: "bridge",
    tag: "(c)",
    label: "bridge + iptables masq",
    detail:
      "veth + Linux bridge br0 + iptables-nft MASQUERADE and FORWARD rules (conntrack, br_netfilter), as nerdctl's and " +
      'Nomad\'s bridge CNI chains build it, in its own throwaway "host" netns. Default veth offloads, no BIG TCP (as deployed).',
  },
  {
    key: "routed",
    tag: "(d)",
    label: "routed veth",
    detail:
      'plain L3 routing: /32 pods, static neighbours, ip_forward=1, in its own "host" netns. No BIG TCP.',
  },
  {
    key: "routed-big",
    tag: "(d')",
    label: "routed veth + BIG TCP",
    detail:
      "as (d) with the same BIG TCP sizes nkit uses (192 KiB), for a fair throughput comparison with (b).",
  },
];

function num(v: string | undefined, fallback: number, name: string): number {
  if (v === undefined || v === "") return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name}: "${v}" is not a non-negative number`);
  return n;
}

function parseConfig(argv: string[]): Config {
  const values = parseOptions(
    argv,
    {
      quick: { type: "boolean" },
      rounds: { type: "string" },
      seconds: { type: "string" },
      pods: { type: "string" },
      "bridge-pods": { type: "string" },
      paths: { type: "string" },
      "clean-pct": { type: "string" },
      "idle-wait": { type: "string" },
      retries: { type: "string" },
      "no-wiring": { type: "boolean" },
      "no-datapath": { type: "boolean" },
      out: { type: "string" },
    },
    USAGE,
  );
  const env = process.env;
  const quick = values.quick ?? ["1", "true", "yes"].includes(env.BENCH_QUICK ?? "");
  const paths = (values.paths ?? env.BENCH_PATHS ?? ALL_PATHS.map((p) => p.key).join(","))
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  for (const p of paths) {
    if (!ALL_PATHS.some((x) => x.key === p)) throw new Error(`unknown path "${p}"\n${USAGE}`);
  }
  if (!paths.includes("loopback")) paths.unshift("loopback"); // ratios need it
  const cfg: Config = {
    quick,
    rounds: Math.max(1, Math.round(num(values.rounds ?? env.BENCH_ROUNDS, quick ? 1 : 3, "rounds"))),
    seconds: Math.max(1, Math.round(num(values.seconds ?? env.BENCH_SECONDS, quick ? 1 : 4, "seconds"))),
    pods: Math.min(4000, Math.round(num(values.pods ?? env.BENCH_PODS, quick ? 20 : 100, "pods"))),
    bridgePods: Math.min(250, Math.round(num(values["bridge-pods"], quick ? 5 : 20, "bridge-pods"))),
    paths,
    cleanThresholdPct: num(values["clean-pct"] ?? env.BENCH_CLEAN_PCT, 15, "clean-pct"),
    idleWaitS: num(values["idle-wait"] ?? env.BENCH_IDLE_WAIT, quick ? 0.5 : 3, "idle-wait"),
    retries: Math.round(num(values.retries, quick ? 0 : 1, "retries")),
    wiring: !values["no-wiring"],
    datapath: !values["no-datapath"],
    out: values.out ?? RESULTS_DIR,
  };
  return cfg;
}

function preflight(): void {
  if (process.getuid?.() !== 0) throw new Error("the benchmark needs root (netns, veth, BPF, SCHED_FIFO)");
  for (const f of [ADDON, DATAPATH_OBJ]) {
    if (!existsSync(f)) throw new Error(`${f} is missing: run \`npm run build\` (npm run bench does)`);
  }
  // bench/tools: make is cheap when up to date.
  execFileSync("make", ["-s", "-C", TOOLS_DIR], { stdio: "inherit" });
  if (!existsSync(RR_BIN)) throw new Error(`${RR_BIN} was not built`);
  for (const tool of ["ip", "iptables", "iperf3", "taskset", "chrt", "nsenter"]) {
    try {
      execFileSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" });
    } catch {
      throw new Error(`${tool} is not installed (apt-get install iproute2 iptables iperf3 util-linux)`);
    }
  }
}

function environment(): Record<string, string | number> {
  const dirty = tryCmd("git", ["-C", ROOT, "status", "--porcelain"]);
  return {
    ...baseEnvironment(),
    git: `${tryCmd("git", ["-C", ROOT, "rev-parse", "--short", "HEAD"])}${dirty && dirty !== "?" ? "+dirty" : ""}`,
    loadavg1: loadavg1(),
  };
}

async function setupPaths(cfg: Config, prefix: string, cleanup: Cleanup): Promise<LivePath[]> {
  const live: LivePath[] = [];
  for (const key of cfg.paths) {
    const info = ALL_PATHS.find((p) => p.key === key)!;
    log(`setting up ${info.tag} ${info.label}`);
    switch (key) {
      case "loopback":
        live.push({ info, client: { ipv4: "127.0.0.1" }, server: { ipv4: "127.0.0.1" } });
        break;
      case "nkit":
      case "nkit-nobig":
      case "nkit-nosteer": {
        const p = await nkitPair({
          prefix,
          label: key === "nkit" ? "nk" : key === "nkit-nobig" ? "nknb" : "nkns",
          bigTcp: key !== "nkit-nobig",
          ...(key === "nkit-nosteer" ? { flowSteering: false } : {}),
          cleanup,
        });
        // packets per reason over both endpoints of the pair
        const counters = () => packetCounters(p.nkit, [p.client.ep.id, p.server.ep.id]);
        live.push({ info, client: p.client, server: p.server, counters });
        break;
      }
      case "bridge":
      case "routed":
      case "routed-big": {
        const make = key === "bridge" ? bridgeTopology : routedTopology;
        const p = await make({ prefix, bigTcp: key === "routed-big", cleanup });
        live.push({ info, client: p.client, server: p.server });
        break;
      }
    }
  }
  return live;
}

function fmtSample(test: TestKind, r: RunRecord): string {
  if (r.error) return `ERROR ${r.error}`;
  const s = r.sample!;
  const v =
    test === "stream"
      ? `${s.gbps?.toFixed(2)} Gbit/s retrans ${s.retransmits}`
      : `${Math.round(s.rate ?? 0)}/s p50 ${s.p50_us?.toFixed(1)}µs p99 ${s.p99_us?.toFixed(1)}µs`;
  const n = r.noise!;
  return `${v}  [others ${n.othersPct.toFixed(1)}% steal ${n.stealPct.toFixed(1)}% ours ${n.oursPct.toFixed(0)}% → ${r.clean ? "clean" : "UNCLEAN"}]`;
}

function stamp(d: Date): string {
  return d
    .toISOString()
    .replace(/\.\d+Z$/, "Z")
    .replace(/:/g, "-");
}

function updateReadme(block: string): boolean {
  if (!existsSync(README)) return false;
  const text = readFileSync(README, "utf8");
  const start = "<!-- bench:latest:start -->";
  const end = "<!-- bench:latest:end -->";
  const a = text.indexOf(start);
  const b = text.indexOf(end);
  if (a < 0 || b < a) return false;
  writeFileSync(README, `${text.slice(0, a + start.length)}\n${block}\n${text.slice(b)}`);
  return true;
}

export async function main(argv: string[]): Promise<number> {
  const cfg = parseConfig(argv);
  preflight();
  const started = new Date();
  const prefix = `nkb-${randomBytes(2).toString("hex")}`;
  const cleanup = new Cleanup();
  cleanupOnSignals(cleanup, log);
  const basePort = 20000 + Math.floor(Math.random() * 20000);
  const env = environment();
  log(
    `nkit datapath benchmark (${cfg.quick ? "quick" : "full"}): ${cfg.rounds} rounds × ${cfg.seconds} s, ` +
      `paths ${cfg.paths.join(",")}, ${cfg.pods} pods wired; names ${prefix}-*; load ${env.loadavg1}`,
  );
  const notes: string[] = [];
  let runs: RunRecord[] = [];
  let wiring: WiringResult | undefined;
  const counters: Record<string, Record<string, number>> = {};
  let failure: unknown;
  try {
    if (cfg.datapath) {
      const live = await setupPaths(cfg, prefix, cleanup);
      await warmUp(live, basePort + 5000, log);
      runs = await trafficRuns(live, {
        ...cfg,
        idleWaitMs: cfg.idleWaitS * 1000,
        basePort,
        log,
        format: fmtSample,
      });
      for (const p of live) if (p.counters) counters[p.info.key] = p.counters();
    }
    if (cfg.wiring) {
      log(`wiring benchmark: ${cfg.pods} pods`);
      await waitForIdle(cfg.cleanThresholdPct, cfg.idleWaitS * 1000);
      wiring = await wiringBench({ prefix, pods: cfg.pods, bridgePods: cfg.bridgePods, cleanup, log });
    }
  } catch (e) {
    failure = e;
    log(`benchmark failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    notes.push(`The run failed and is incomplete: ${e instanceof Error ? e.message : String(e)}`);
  } finally {
    log("cleaning up");
    await runCleanup(cleanup, log, notes);
  }
  const leftovers = netnsLeftovers(prefix);
  if (leftovers.length) notes.push(`netns left behind (please report): ${leftovers.join(", ")}`);

  const finished = new Date();
  const paths = ALL_PATHS.filter((p) => cfg.paths.includes(p.key));
  const summary = summarize(paths, runs);
  const targets = evaluateTargets(summary, wiring);
  if (summary.some((s) => Object.values(s.metrics).some((m) => m.basis === "all"))) {
    notes.push(
      "† marks a path/test without a single clean run: its median is over all runs and less trustworthy.",
    );
  }
  for (const [k, c] of Object.entries(counters)) {
    const peer = c.REDIRECT_PEER ?? 0;
    const stack = c.TO_STACK ?? 0;
    const drops = Object.entries(c)
      .filter(([n]) => n.startsWith("DROP"))
      .reduce((a, [, v]) => a + v, 0);
    notes.push(
      `${k}: ${peer.toLocaleString("en-US")} packets took bpf_redirect_peer, ${stack.toLocaleString("en-US")} went to the host stack, ${drops} dropped by the programs.`,
    );
  }
  const mode = cfg.quick ? "quick" : "full";
  const command = `npm run bench${argv.length ? ` -- ${argv.join(" ")}` : ""}`;
  const input: ReportInput = {
    title: "nkit datapath benchmark",
    startedAt: started.toISOString(),
    finishedAt: finished.toISOString(),
    durationS: (finished.getTime() - started.getTime()) / 1000,
    command,
    mode,
    config: { ...cfg },
    env,
    paths,
    runs,
    summary,
    targets,
    wiring,
    counters,
    notes,
  };
  mkdirSync(cfg.out, { recursive: true });
  // A wiring-only run (--no-datapath, as the suite runs it) keeps its own files, so it never
  // replaces the traffic results of datapath-latest.
  const name = cfg.datapath ? "datapath" : "wiring";
  const base = `${name}-${stamp(started)}${cfg.quick ? "-quick" : ""}`;
  const md = markdown(input);
  const json = `${JSON.stringify(input, null, 2)}\n`;
  writeFileSync(join(cfg.out, `${base}.json`), json);
  writeFileSync(join(cfg.out, `${base}.md`), md);
  const latest = cfg.quick ? `${name}-quick-latest` : `${name}-latest`;
  if (!failure) {
    copyFileSync(join(cfg.out, `${base}.json`), join(cfg.out, `${latest}.json`));
    copyFileSync(join(cfg.out, `${base}.md`), join(cfg.out, `${latest}.md`));
  }
  const complete = !failure && cfg.datapath && cfg.wiring && cfg.paths.length === ALL_PATHS.length;
  if (!cfg.quick && complete && cfg.out === RESULTS_DIR && updateReadme(readmeBlock(input, `${base}.md`))) {
    log("bench/README.md: latest results updated");
  }
  process.stdout.write(`${md}\n`);
  log(`results: ${join(cfg.out, `${base}.{json,md}`)}${failure ? "" : ` (+ ${latest}.{json,md})`}`);
  return failure ? 1 : 0;
}
