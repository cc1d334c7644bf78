// `npm run bench`: every benchmark in one command, one after the other (they share the machine's two
// cores and would disturb each other), each in its own process as `npm run bench:<name>` runs it,
// its progress lines prefixed with where the suite is. Each writes its own results files as usual;
// the suite gathers them into bench/results/<timestamp>.{json,md}: what ran, how long, whether it
// succeeded, and each benchmark's result.
import { spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { RESULTS_DIR, ROOT } from "./paths.js";
import { baseEnvironment } from "./runner.js";
import { inputFromLatest, inputFromSuite, refreshReadme, writeReport } from "./suite-report.js";

const DIST = join(ROOT, "bench", "dist", "bench");

/** One benchmark of the suite: how to run it (full and --quick) and which results it writes. */
export interface SuiteBenchmark {
  name: string;
  what: string;
  /** How to run it, writing its results into `out`. */
  command: (quick: boolean, out: string) => { cmd: string; args: string[]; env?: Record<string, string> };
  /** The `<prefix>[-quick]-latest.{json,md}` it writes into its results directory. */
  results: string;
}

const node = (script: string, ...args: string[]) => ({
  cmd: process.execPath,
  args: [join(DIST, script), ...args],
});

/**
 * A full suite run must fit 15 minutes on two cores with every figure a median of 5 rounds: the
 * traffic benchmarks measure 2 s per run here (their own default, run alone, is longer), and the
 * datapath compares the paths the report shows: loopback, nkit with and without flow steering,
 * veth + bridge + iptables, routed veth with BIG TCP.
 */
const SUITE_TRAFFIC = ["--rounds", "5", "--seconds", "2"];
const SUITE_PATHS = ["--paths", "loopback,nkit,nkit-nosteer,bridge,routed-big"];

export const BENCHMARKS: readonly SuiteBenchmark[] = [
  {
    name: "datapath",
    what: "TCP_RR/CRR/STREAM: loopback, nkit, bridge + iptables, routed veth",
    command: (q, out) =>
      node("datapath.js", "--no-wiring", "--out", out, ...SUITE_PATHS, ...(q ? ["--quick"] : SUITE_TRAFFIC)),
    results: "datapath",
  },
  {
    name: "wiring",
    what: "EndpointManager wire/unwire latency, nkit vs the iproute2 bridge recipe",
    command: (q, out) => node("datapath.js", "--no-datapath", "--out", out, ...(q ? ["--quick"] : [])),
    results: "wiring",
  },
  {
    name: "cri",
    what: "RunPodSandbox, Stop+Remove, NRI handler, CNI ADD/DEL vs the bridge plugin, both containerd lanes",
    command: (q, out) =>
      node(
        "cri.js",
        "--out",
        out,
        ...(q ? ["--pods", "3", "--warmup", "1", "--cni-calls", "20", "--lanes", "2"] : []),
      ),
    results: "cri",
  },
  {
    name: "churn",
    what: "pods created and removed through CRI in waves: rate vs the bridge plugin, and nothing left behind",
    command: (q, out) => node("churn.js", "--out", out, ...(q ? ["--quick"] : [])),
    results: "churn",
  },
  {
    name: "services",
    what: "service VIPs at 1/1,000/10,000 services vs an iptables DNAT chain",
    command: (q, out) => node("services.js", "--out", out, ...(q ? ["--quick"] : SUITE_TRAFFIC)),
    results: "services",
  },
  {
    name: "masq",
    what: "BPF masquerade vs iptables MASQUERADE",
    command: (q, out) => node("masquerade.js", "--out", out, ...(q ? ["--quick"] : SUITE_TRAFFIC)),
    results: "masquerade",
  },
  {
    name: "memory",
    what: "nkitd under load: 1,000 endpoints, 10,000 services, RSS, single service adds",
    command: (q, out) => node("load.js", "--out", out, ...(q ? ["--quick"] : [])),
    results: "load",
  },
  {
    name: "vm",
    what: "netkit vs veth in the netkit VM lane (QEMU TCG: emulated, read as ratios)",
    command: (q, out) => ({
      cmd: "bash",
      args: [join(ROOT, "scripts", "vm", "bench.sh")],
      env: {
        NKIT_VM_BENCH_OUT: out,
        ...(q
          ? { NKIT_VM_BENCH_ROUNDS: "1", NKIT_VM_BENCH_SECONDS: "1", NKIT_VM_BENCH_PODS: "5" }
          : { NKIT_VM_BENCH_ROUNDS: "5", NKIT_VM_BENCH_SECONDS: "2" }),
      },
    }),
    results: "vm",
  },
];

export interface SuiteConfig {
  quick: boolean;
  only: SuiteBenchmark[];
}

const USAGE = `usage: npm run bench -- [--quick] [--only ${BENCHMARKS.map((b) => b.name).join(",")}]

${BENCHMARKS.map((b) => `  ${b.name.padEnd(9)} ${b.what}`).join("\n")}
`;

export function parseSuiteArgs(argv: readonly string[]): SuiteConfig {
  const { values } = parseArgs({
    args: [...argv],
    options: { quick: { type: "boolean" }, only: { type: "string" }, help: { type: "boolean" } },
  });
  if (values.help) throw new SuiteUsage(USAGE);
  const names = values.only
    ?.split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = names?.filter((n) => !BENCHMARKS.some((b) => b.name === n)) ?? [];
  if (unknown.length > 0) throw new SuiteUsage(`unknown benchmark ${unknown.join(", ")}\n${USAGE}`);
  if (names?.length === 0) throw new SuiteUsage(`--only needs at least one benchmark\n${USAGE}`);
  return {
    quick: values.quick === true,
    // In the suite's order whatever order --only names them in.
    only: names ? BENCHMARKS.filter((b) => names.includes(b.name)) : [...BENCHMARKS],
  };
}

export class SuiteUsage extends Error {}

/** What one benchmark of a suite run gave. */
export interface SuiteEntry {
  name: string;
  ok: boolean;
  exitCode: number | null;
  seconds: number;
  /** Its `<prefix>-latest.json` when this run wrote it (else why not). */
  result?: unknown;
  missing?: string;
  /** Its Markdown report, as written. */
  markdown?: string;
}

/** The suite's own report: a summary table, then every benchmark's report in order. */
export function suiteMarkdown(started: Date, quick: boolean, entries: readonly SuiteEntry[]): string {
  const total = entries.reduce((s, e) => s + e.seconds, 0);
  return [
    `# nkit benchmarks, ${started.toISOString()}${quick ? " (quick)" : ""}`,
    "",
    `${entries.length} benchmarks in ${Math.round(total)} s, one at a time on this machine. Reproduce: \`sudo npm run bench${quick ? " -- --quick" : ""}\`.`,
    "",
    "| benchmark | status | seconds |",
    "|---|---|---:|",
    ...entries.map(
      (e) =>
        `| ${e.name} | ${e.ok ? "ok" : `FAILED (exit ${e.exitCode}${e.missing ? `; ${e.missing}` : ""})`} | ${Math.round(e.seconds)} |`,
    ),
    "",
    ...entries.flatMap((e) =>
      e.markdown ? [`---`, "", e.markdown.replace(/^# /, `# ${e.name}: `), ""] : [],
    ),
  ].join("\n");
}

/** Runs one benchmark, its output lines prefixed with `tag`; resolves with its exit code. */
function runOne(b: SuiteBenchmark, quick: boolean, out: string, tag: string): Promise<number | null> {
  const { cmd, args, env } = b.command(quick, out);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const relay = (to: NodeJS.WriteStream) => {
      let rest = "";
      return (d: Buffer) => {
        const lines = (rest + d.toString()).split("\n");
        rest = lines.pop() ?? "";
        for (const l of lines) to.write(`${tag} ${l}\n`);
      };
    };
    // The benchmarks print their report on stdout and progress on stderr: both go to stderr here,
    // so the suite's stdout is its own report.
    child.stdout.on("data", relay(process.stderr));
    child.stderr.on("data", relay(process.stderr));
    child.once("error", reject);
    child.once("close", (code) => resolve(code));
  });
}

/** A benchmark's latest results in `dir` if they were written after `since`. */
function freshResults(
  dir: string,
  prefix: string,
  since: number,
): Pick<SuiteEntry, "result" | "markdown" | "missing"> {
  for (const name of [`${prefix}-quick-latest`, `${prefix}-latest`]) {
    const json = join(dir, `${name}.json`);
    if (!existsSync(json) || statSync(json).mtimeMs < since) continue;
    const md = join(dir, `${name}.md`);
    return {
      result: JSON.parse(readFileSync(json, "utf8")) as unknown,
      ...(existsSync(md) ? { markdown: readFileSync(md, "utf8") } : {}),
    };
  }
  return { missing: `no fresh ${prefix} results in ${dir}` };
}

export async function main(argv: readonly string[]): Promise<number> {
  let cfg: SuiteConfig;
  try {
    cfg = parseSuiteArgs(argv);
  } catch (e) {
    if (!(e instanceof SuiteUsage)) throw e;
    process.stderr.write(`${e.message}\n`);
    return 2;
  }
  const started = new Date();
  // A quick run keeps its files apart, so it never replaces a full run's *-latest results.
  const out = cfg.quick ? join(RESULTS_DIR, "quick") : RESULTS_DIR;
  mkdirSync(out, { recursive: true });
  const entries: SuiteEntry[] = [];
  for (const [i, b] of cfg.only.entries()) {
    const tag = `[bench ${i + 1}/${cfg.only.length} ${b.name}]`;
    process.stderr.write(`${tag} ${b.what}${cfg.quick ? " (quick)" : ""}\n`);
    const t0 = Date.now();
    const exitCode = await runOne(b, cfg.quick, out, tag);
    const seconds = (Date.now() - t0) / 1000;
    const fresh = freshResults(out, b.results, t0);
    entries.push({ name: b.name, ok: exitCode === 0 && !fresh.missing, exitCode, seconds, ...fresh });
    process.stderr.write(
      `${tag} ${exitCode === 0 ? "done" : `FAILED (exit ${exitCode})`} in ${Math.round(seconds)} s\n`,
    );
  }
  const stamp = started
    .toISOString()
    .replace(/\.\d+Z$/, "Z")
    .replace(/:/g, "-");
  const base = join(out, stamp);
  const md = suiteMarkdown(started, cfg.quick, entries);
  const doc = {
    kind: "nkit-bench-suite",
    startedAt: started.toISOString(),
    finishedAt: new Date().toISOString(),
    quick: cfg.quick,
    environment: baseEnvironment(),
    benchmarks: entries.map(({ markdown: _md, ...e }) => e),
  };
  writeFileSync(`${base}.json`, `${JSON.stringify(doc, null, 2)}\n`);
  writeFileSync(`${base}.md`, md);
  copyFileSync(`${base}.json`, join(out, "suite-latest.json"));
  copyFileSync(`${base}.md`, join(out, "suite-latest.md"));
  process.stdout.write(`${md}\n`);
  process.stderr.write(`results: ${base}.{json,md}\n`);
  // The report: a full run's from every benchmark's latest results (this run's, and earlier ones
  // for benchmarks --only left out), refreshing README's headline; a quick run's from its own.
  const all = entries.length === BENCHMARKS.length && entries.every((e) => e.ok);
  const input = cfg.quick || all ? inputFromSuite(`${base}.json`) : inputFromLatest(out);
  const report = await writeReport(input, join(out, "report"));
  if (!cfg.quick) refreshReadme(join(ROOT, "README.md"), report.headline, "bench/results/report/report.md");
  process.stderr.write(`report: ${join(out, "report")}/report.{md,html} (${report.charts.length} charts)\n`);
  return entries.every((e) => e.ok) ? 0 : 1;
}
