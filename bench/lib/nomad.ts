// The Nomad benchmark run (`npm run bench:nomad`): one loopback-only Nomad v1.6.5 agent (the lane of
// test/nomad) runs single-allocation jobs with `network { mode = "cni/nkit" }` (the conflist
// `nkit install` writes, a private nkitd) and with Nomad's own `bridge` mode (Debian's CNI plugins),
// interleaved. Measured per allocation: from the job's registration to the first TCP connect its
// published port accepts on 127.0.0.1 (a prober in the host's socket-LB cgroup, as any host process);
// the CNI ADD as Nomad runs it (every plugin exec'd through bench/tools/cni-timer); and, for nkit, the
// ADD time nkitd reports (nkit_cni_request_duration_seconds). Writes bench/results/nomad-<ts>.{json,md}
// and nomad-latest.{json,md}.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { cpus, loadavg, release, tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { Nkitd, nkitdSetup } from "../../test/helpers/nkitd.js";
import { Scope } from "../../test/helpers/scope.js";
import { installCni, NomadAgent, nomadPortBase, nomadUnavailable } from "../../test/nomad/env.js";
import { Cleanup, cleanupOnSignals, removeLinkItMakes } from "./cleanup.js";
import { type LatencyMs, latency } from "./cri-report.js";
import { harnessProblem, keepRun, scrapeMetric } from "./e2e-bench.js";
import { snapshotIptables } from "./iptables.js";
import { RESULTS_DIR, ROOT } from "./paths.js";

const log = (m: string) => process.stderr.write(`${m}\n`);

const USAGE = `usage: npm run bench:nomad -- [options]   (root; needs npm run build and a Nomad v1.6.5 binary)

  --allocations N  allocations per network mode (one job each, sequential)   [10]
  --warmup N       warm-up allocations per mode, not counted                   [1]
  --out DIR        results directory                                           [bench/results]
`;

type Mode = "nkit" | "bridge";
const NETWORK_MODE: Record<Mode, string> = { nkit: "cni/nkit", bridge: "bridge" };
const DEBIAN_CNI = "/usr/lib/cni";
const TIMER_BIN = join(ROOT, "bench", "tools", "build", "cni-timer");
/** Nomad's bridge mode: its bridge device and host-local's state dir, removed when the run made them. */
const NOMAD_BRIDGE = "nomad";
const HOST_LOCAL_DIR = "/var/lib/cni/networks/nomad";

interface PluginTime {
  plugin: string;
  command: string;
  container: string;
  ms: number;
  status: number;
}

interface ModeResult {
  /** Job registered to the first TCP connect its published port accepts (ms). */
  startToConnect: LatencyMs;
  /** The CNI ADD chain as Nomad ran it: every plugin's exec for the allocation, summed (ms). */
  cniAdd: LatencyMs;
  /** Per plugin, its ADD exec time (ms). */
  plugins: Record<string, LatencyMs>;
  /** nkit only: ADD as nkitd reports it (nkit_cni_request_duration_seconds), per allocation (ms). */
  nkitdAdd?: LatencyMs;
  errors: string[];
}

const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;

/**
 * A long-lived connect prober in the socket-LB cgroup nkitd serves (the host's processes): told a
 * host:port, it connects every 2 ms until one is accepted and answers "ok" (or "timeout").
 */
class Prober {
  private readonly pending: ((line: string) => void)[] = [];
  private constructor(private readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on("line", (l) => this.pending.shift()?.(l));
  }

  static start(cgroup: string): Prober {
    const script = `const net = require("node:net");
require("node:readline").createInterface({ input: process.stdin }).on("line", (l) => {
  const [host, port, ms] = l.split(" ");
  const deadline = Date.now() + Number(ms);
  const attempt = () => {
    const s = net.connect({ host, port: Number(port) }, () => { s.destroy(); process.stdout.write("ok\\n"); });
    s.on("error", () => {
      if (Date.now() > deadline) process.stdout.write("timeout\\n");
      else setTimeout(attempt, 2);
    });
  };
  attempt();
});`;
    const child = spawn(
      "sh",
      ["-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgroup, process.execPath, "-e", script],
      { stdio: ["pipe", "pipe", "inherit"] },
    );
    return new Prober(child);
  }

  /** Resolves when host:port accepts a connection, rejects after timeoutMs. */
  connect(host: string, port: number, timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pending.push((line) =>
        line === "ok" ? resolve() : reject(new Error(`no TCP connect to ${host}:${port} in ${timeoutMs} ms`)),
      );
      this.child.stdin!.write(`${host} ${port} ${timeoutMs}\n`);
    });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once("exit", r));
    this.child.kill("SIGKILL");
    await exited;
  }
}

/**
 * A cni_path whose every plugin is bench/tools/cni-timer in front of the real one: nkit-cni from the
 * dir `nkit install` filled, the rest from Debian's containernetworking-plugins.
 */
function timedCniPath(scope: Scope, nkitBinDir: string): { dir: string; logFile: string } {
  const root = mkdtempSync(join(tmpdir(), "nkit-bench-nomad-cni-"));
  scope.defer(() => rmSync(root, { recursive: true, force: true }));
  const dir = join(root, "bin");
  const real = join(root, "real");
  mkdirSync(dir);
  mkdirSync(real);
  const logFile = join(root, "cni-times.tsv");
  for (const p of readdirSync(DEBIAN_CNI)) symlinkSync(join(DEBIAN_CNI, p), join(real, p));
  for (const p of readdirSync(nkitBinDir)) {
    rmSync(join(real, p), { force: true });
    symlinkSync(join(nkitBinDir, p), join(real, p));
  }
  for (const p of readdirSync(real)) copyFileSync(TIMER_BIN, join(dir, p));
  writeFileSync(join(dir, ".cni-timer"), `${real}\n${logFile}\n`);
  return { dir, logFile };
}

function pluginTimes(logFile: string): PluginTime[] {
  if (!existsSync(logFile)) return [];
  return readFileSync(logFile, "utf8")
    .split("\n")
    .filter((l) => l.length > 0)
    .map((l) => {
      const [plugin = "", command = "", container = "", start = "0", end = "0", status = "0"] = l.split("\t");
      return {
        plugin,
        command,
        container,
        ms: Number(BigInt(end) - BigInt(start)) / 1e6,
        status: Number(status),
      };
    });
}

const CNI_ADD_SUM = 'nkit_cni_request_duration_seconds_sum{command="ADD",result="ok"}';

const jobHcl = (id: string, mode: Mode, port: number): string => `
job "${id}" {
  datacenters = ["dc1"]
  type = "service"
  group "g" {
    network {
      mode = "${NETWORK_MODE[mode]}"
      port "http" {
        static = ${port}
        to     = 8080
      }
    }
    task "httpd" {
      driver = "exec"
      # busybox is PID 1 of the task's pid namespace and ignores the stop signal: no 5 s wait for the kill.
      kill_timeout = "1s"
      config {
        command = "/bin/busybox"
        args    = ["httpd", "-f", "-p", "8080", "-h", "/tmp"]
      }
      resources {
        cpu    = 50
        memory = 32
      }
    }
  }
}
`;

interface Sample {
  connectMs: number;
  allocId: string;
  nkitdAddMs?: number;
}

async function oneAllocation(
  nomad: NomadAgent,
  prober: Prober,
  mode: Mode,
  id: string,
  port: number,
  metrics: string,
): Promise<Sample> {
  const job = await nomad.parseJob(jobHcl(id, mode, port));
  const addBefore = await scrapeMetric(metrics, CNI_ADD_SUM);
  const connected = prober.connect("127.0.0.1", port, 60_000);
  const t0 = process.hrtime.bigint();
  try {
    await nomad.registerJob(job);
    await connected;
    const connectMs = ms(t0);
    const [alloc] = await nomad.running(id, 1, 30_000);
    const addAfter = await scrapeMetric(metrics, CNI_ADD_SUM);
    return {
      connectMs,
      allocId: alloc!.ID,
      ...(mode === "nkit" ? { nkitdAddMs: (addAfter - addBefore) * 1000 } : {}),
    };
  } finally {
    await connected.catch(() => undefined);
    const allocs = await nomad.allocations(id).catch(() => []);
    await nomad.stopJob(id);
    // Sequential allocations: the next starts once this one's network is gone (Nomad's DEL done).
    const deadline = Date.now() + 60_000;
    while (allocs.some((a) => existsSync(`/var/run/netns/${a.ID}`)) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

interface RunReport {
  startedAt: string;
  finishedAt: string;
  host: Record<string, unknown>;
  nomadVersion: string;
  allocations: number;
  warmup: number;
  modes: Record<Mode, ModeResult>;
}

async function runBench(allocations: number, warmup: number, cleanup: Cleanup): Promise<RunReport> {
  const started = new Date().toISOString();
  const scope = new Scope();
  cleanup.defer("nkitd, Nomad agent and their dirs", () => scope.close());
  const undoIptables = snapshotIptables();
  cleanup.defer("iptables rules Nomad's bridge mode added", () => {
    for (const e of undoIptables()) log(`iptables cleanup: ${e}`);
  });
  removeLinkItMakes(cleanup, NOMAD_BRIDGE);
  if (!existsSync(HOST_LOCAL_DIR)) {
    cleanup.defer(HOST_LOCAL_DIR, () => rmSync(HOST_LOCAL_DIR, { recursive: true, force: true }));
  }
  const nomadPort = nomadPortBase();
  // Below the ephemeral range, like the agent's ports.
  const metricsPort = randomInt(12000, 19000);
  const setup = await nkitdSetup(scope, "nomadbench", [
    `nomad: {address: "http://127.0.0.1:${nomadPort}"}`,
    `metrics: {listen: "127.0.0.1:${metricsPort}"}`,
  ]);
  const cni = await installCni(scope, { socket: `${setup.runDir}/cni.sock` });
  const timed = timedCniPath(scope, cni.binDir);
  await Nkitd.start(scope, ["--config", setup.config]);
  const prober = Prober.start(setup.cgroup);
  scope.defer(() => prober.stop());
  const nomad = await NomadAgent.start(scope, { binDir: timed.dir, confDir: cni.confDir }, nomadPort);
  const self = await nomad.get<{ config: { Version: { Version: string } } }>("/v1/agent/self");
  const metrics = `127.0.0.1:${metricsPort}`;
  const rnd = randomBytes(3).toString("hex");
  const portBase = nomadPort + 10;
  const samples: Record<Mode, Sample[]> = { nkit: [], bridge: [] };
  const errors: Record<Mode, string[]> = { nkit: [], bridge: [] };
  const order: Mode[] = ["nkit", "bridge"];
  let k = 0;
  for (let i = 0; i < warmup + allocations; i++) {
    // alternate which mode goes first, so neither always follows the other
    for (let j = 0; j < order.length; j++) {
      const mode = order[(i + j) % order.length]!;
      try {
        const s = await oneAllocation(
          nomad,
          prober,
          mode,
          `nkb-${mode}-${rnd}-${i}`,
          portBase + k++,
          metrics,
        );
        if (i >= warmup) samples[mode].push(s);
      } catch (e) {
        errors[mode].push(`allocation ${i}: ${(e as Error).message.split("\n").slice(0, 2).join(" ")}`);
      }
    }
    log(`${i + 1}/${warmup + allocations} allocations per mode`);
  }
  const times = pluginTimes(timed.logFile).filter((t) => t.command === "ADD");
  const modeResult = (mode: Mode): ModeResult => {
    const mine = samples[mode];
    const ids = new Set(mine.map((s) => s.allocId));
    const adds = times.filter((t) => ids.has(t.container));
    const plugins: Record<string, number[]> = {};
    for (const t of adds) plugins[t.plugin] = [...(plugins[t.plugin] ?? []), t.ms];
    const chain = mine.map((s) =>
      adds.filter((t) => t.container === s.allocId).reduce((sum, t) => sum + t.ms, 0),
    );
    const nkitd = mine.flatMap((s) => (s.nkitdAddMs === undefined ? [] : [s.nkitdAddMs]));
    return {
      startToConnect: latency(mine.map((s) => s.connectMs)),
      cniAdd: latency(chain),
      plugins: Object.fromEntries(Object.entries(plugins).map(([p, v]) => [p, latency(v)])),
      ...(mode === "nkit" ? { nkitdAdd: latency(nkitd) } : {}),
      errors: errors[mode],
    };
  };
  return {
    startedAt: started,
    finishedAt: new Date().toISOString(),
    host: { cpus: cpus().length, kernel: release(), loadavg: loadavg() },
    nomadVersion: self.config.Version.Version,
    allocations,
    warmup,
    modes: { nkit: modeResult("nkit"), bridge: modeResult("bridge") },
  };
}

function markdown(r: RunReport): string {
  const { nkit, bridge } = r.modes;
  const row = (mode: Mode, m: ModeResult) =>
    `| ${NETWORK_MODE[mode]} | ${m.startToConnect.p50} ms | ${m.startToConnect.p90} ms | ${m.startToConnect.max} ms | ${m.cniAdd.p50} ms | ${m.cniAdd.p90} ms | ${m.startToConnect.n} |`;
  const lines = [
    "# Nomad: allocation start to first TCP connect, cni/nkit vs Nomad's bridge mode",
    "",
    `Run ${r.startedAt} on ${JSON.stringify(r.host)}; Nomad v${r.nomadVersion} (server + client, exec driver);`,
    `${r.allocations} allocations per mode, one job each, sequential and interleaved, after ${r.warmup} warm-up each.`,
    "start→connect: from registering the job to the first TCP connect its published port (`static`, `to = 8080`)",
    "accepts on 127.0.0.1, from a host process. CNI ADD: the plugins Nomad exec'd for the allocation, each",
    "timed by bench/tools/cni-timer (its own exec not counted), summed. cni/nkit: the conflist `nkit install`",
    "writes and a private nkitd (veth + tcx on this kernel). bridge: Nomad's own bridge network (loopback,",
    "bridge + host-local, firewall, portmap from Debian's containernetworking-plugins).",
    "",
    "| mode | start→connect p50 | p90 | max | CNI ADD p50 | p90 | n |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    row("nkit", nkit),
    row("bridge", bridge),
    "",
    "CNI ADD per plugin (p50):",
    "",
    ...(["nkit", "bridge"] as const).map(
      (mode) =>
        `- ${NETWORK_MODE[mode]}: ${Object.entries(r.modes[mode].plugins)
          .map(([p, l]) => `${p} ${l.p50} ms`)
          .join(", ")}`,
    ),
    "",
    `nkitd's own ADD time (nkit_cni_request_duration_seconds, ADD ok, per allocation): p50 ${nkit.nkitdAdd?.p50} ms, p90 ${nkit.nkitdAdd?.p90} ms, max ${nkit.nkitdAdd?.max} ms.`,
    "",
    "Target: cni/nkit p50 ≤ bridge p50 (start to first connect).",
    "",
    `- ${nkit.startToConnect.p50 <= bridge.startToConnect.p50 ? "PASS" : "MISS"}: cni/nkit ${nkit.startToConnect.p50} ms vs bridge ${bridge.startToConnect.p50} ms (ratio ${(nkit.startToConnect.p50 / bridge.startToConnect.p50).toFixed(2)}); CNI ADD ${nkit.cniAdd.p50} ms vs ${bridge.cniAdd.p50} ms (ratio ${(nkit.cniAdd.p50 / bridge.cniAdd.p50).toFixed(2)})`,
  ];
  for (const mode of ["nkit", "bridge"] as const)
    for (const e of r.modes[mode].errors) lines.push(`  - ${mode} error: ${e}`);
  return `${lines.join("\n")}\n`;
}

export async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      allocations: { type: "string" },
      warmup: { type: "string" },
      out: { type: "string" },
      help: { type: "boolean" },
    },
  });
  if (values.help) {
    log(USAGE);
    return 0;
  }
  const allocations = Number(values.allocations ?? 10);
  const warmup = Number(values.warmup ?? 1);
  if (!Number.isInteger(allocations) || allocations < 1 || !Number.isInteger(warmup) || warmup < 0) {
    log(`--allocations and --warmup take whole numbers\n${USAGE}`);
    return 2;
  }
  const problem =
    harnessProblem("bench:nomad") ??
    nomadUnavailable() ??
    (existsSync(TIMER_BIN) ? undefined : `${TIMER_BIN} is missing: run make -C bench/tools`) ??
    (existsSync(join(DEBIAN_CNI, "bridge"))
      ? undefined
      : `no CNI plugins in ${DEBIAN_CNI}: apt install containernetworking-plugins`);
  if (problem) {
    log(problem);
    return 1;
  }
  const started = new Date();
  const cleanup = new Cleanup();
  cleanupOnSignals(cleanup, log);
  let report: RunReport | undefined;
  let failure: string | undefined;
  try {
    report = await runBench(allocations, warmup, cleanup);
  } catch (e) {
    failure = (e as Error).stack ?? String(e);
    log(`bench:nomad failed: ${failure}`);
  } finally {
    for (const err of await cleanup.run()) log(`cleanup: ${err}`);
  }
  if (!report) return 1;
  const complete = Object.values(report.modes).every((m) => m.errors.length === 0);
  const base = keepRun(values.out ?? RESULTS_DIR, "nomad", started, report, markdown(report), complete);
  log(
    `start→connect p50: cni/nkit ${report.modes.nkit.startToConnect.p50} ms, bridge ${report.modes.bridge.startToConnect.p50} ms; CNI ADD p50 ${report.modes.nkit.cniAdd.p50} vs ${report.modes.bridge.cniAdd.p50} ms`,
  );
  log(`results: ${base}.{json,md}${complete ? " (+ nomad-latest.{json,md})" : ""}`);
  return complete ? 0 : 1;
}
