// The CRI benchmark run (`npm run bench:cri`): RunPodSandbox end to end on private containerds with
// nkit (nkit-cni ipam + nkitd's NRI wiring), the stock bridge plugin and a no-op CNI, interleaved pod
// by pod; nkitd's NRI RUN handler latency; nkit-cni ADD/DEL exec'd directly. Writes
// bench/results/cri-<ts>.{json,md} and cri-latest.{json,md}. Uses the e2e harness (test/e2e/env).
import { spawnSync } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, release, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import type { PodSandboxConfig } from "../../test/e2e/env/cri.js";
import { bridgeConflistFile, type ContainerdEnv, startContainerd } from "../../test/e2e/env/index.js";
import type { Lane } from "../../test/e2e/env/lanes.js";
import { NKIT_CNI_BIN, type Nkitd, nkitCni, startNkitd } from "../../test/e2e/env/nkit.js";
import type { Cleanup } from "./cleanup.js";
import {
  type CniVariant,
  type CniWireResult,
  type CriReport,
  evaluate,
  type LaneResult,
  latency,
  markdown,
  VARIANTS,
} from "./cri-report.js";
import {
  harnessConfig,
  intOption,
  keepRun,
  lanesOf,
  runLanes,
  scrapeMetric,
  scrapeMetrics,
} from "./e2e-bench.js";
import { RESULTS_DIR } from "./paths.js";

const log = (m: string) => process.stderr.write(`${m}\n`);

const USAGE = `usage: npm run bench:cri -- [options]   (root; needs npm run build and scripts/e2e/setup.sh)

  --pods N        pods per variant (sequential, removed one by one)   [30]  env BENCH_CRI_PODS
  --warmup N      warm-up pods per variant, not counted                [2]
  --cni-calls N   direct nkit-cni ADD+DEL calls                       [100]
  --lanes L       containerd lanes, comma-separated: 1.7,2            [1.7,2 when lane 2 is built]
  --out DIR       results directory                                   [bench/results]
`;

interface Config {
  pods: number;
  warmup: number;
  cniCalls: number;
  lanes: Lane[];
  out: string;
}

function parseConfig(argv: string[]): Config | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      pods: { type: "string" },
      warmup: { type: "string" },
      "cni-calls": { type: "string" },
      lanes: { type: "string" },
      out: { type: "string" },
      help: { type: "boolean" },
    },
  });
  if (values.help) return undefined;
  const int = (v: string | undefined, d: number, flag: string) => intOption(v, d, flag, 0);
  const lanes = lanesOf(values.lanes, log);
  return {
    pods: int(values.pods ?? process.env.BENCH_CRI_PODS, 30, "--pods"),
    warmup: int(values.warmup, 2, "--warmup"),
    cniCalls: int(values["cni-calls"], 100, "--cni-calls"),
    lanes,
    out: values.out ?? RESULTS_DIR,
  };
}

const STUB = `#!/bin/sh
# no-op CNI for the benchmark: one IP for eth0 (no interface index: go-cni files it under eth0), nothing created
case "$CNI_COMMAND" in
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0"]}' ;;
ADD) cat >/dev/null; echo '{"cniVersion":"1.0.0","ips":[{"address":"169.254.77.1/32"}]}' ;;
*) cat >/dev/null ;;
esac
`;

export function podConfig(env: ContainerdEnv, name: string): PodSandboxConfig {
  const logDirectory = join(env.paths.podLogDir, name);
  mkdirSync(logDirectory, { recursive: true });
  return {
    metadata: { name, uid: randomBytes(8).toString("hex"), namespace: "bench", attempt: 0 },
    hostname: name,
    logDirectory,
    labels: { app: "bench" },
    annotations: {},
    linux: { securityContext: { namespaceOptions: { network: "POD", pid: "POD", ipc: "POD" } } },
  };
}

const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;

const WIRE_SUM = 'nkit_endpoint_wiring_duration_seconds_sum{op="wire",result="ok"}';

export interface Instance {
  variant: CniVariant;
  env: ContainerdEnv;
  nkitd?: Nkitd;
  metrics?: string;
}

/** A private containerd with one CNI variant (nkit: plus its nkitd, wired as `nkit install` sets it up). */
export async function startVariant(lane: Lane, variant: CniVariant, cleanup: Cleanup): Promise<Instance> {
  const rnd = randomBytes(3).toString("hex");
  const network = `nkb-${variant}-${rnd}`;
  let env: ContainerdEnv;
  if (variant === "nkit") {
    env = await startContainerd({
      lane,
      name: `bench-${variant}`,
      cni: nkitCni(network),
      logLevel: "warn",
    });
  } else if (variant === "bridge") {
    env = await startContainerd({
      lane,
      name: `bench-${variant}`,
      cni: {
        conflists: [
          bridgeConflistFile({
            name: network,
            bridge: `nkb${rnd}br`,
            subnet: `10.${randomInt(200, 250)}.${randomInt(0, 256)}.0/24`,
          }),
        ],
      },
      logLevel: "warn",
    });
  } else {
    const dir = mkdtempSync(join(tmpdir(), "nkb-stub-"));
    cleanup.defer(`rm ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
    const stub = join(dir, "nkb-noop");
    writeFileSync(stub, STUB);
    chmodSync(stub, 0o755);
    env = await startContainerd({
      lane,
      name: `bench-${variant}`,
      cni: {
        plugins: { "nkb-noop": stub },
        conflists: [
          {
            file: "10-noop.conflist",
            config: {
              cniVersion: "1.0.0",
              name: network,
              plugins: [{ type: "nkb-noop" }, { type: "loopback" }],
            },
          },
        ],
      },
      logLevel: "warn",
    });
  }
  const inst: Instance = { variant, env };
  cleanup.defer(`containerd ${variant} (${env.paths.dir})`, () => env.stop());
  if (variant === "nkit") {
    const n = await startNkitd(env, { logLevel: "info", metricsListen: "127.0.0.1:0" });
    const m = await n.waitLog((l) => l.msg === "metrics listening", 10_000);
    await n.waitNri();
    inst.nkitd = n;
    inst.metrics = String(m.listen);
  }
  return inst;
}

/** One pod through one variant: RunPodSandbox timed; nkit: the RUN handler's wiring time. */
async function onePod(
  inst: Instance,
  name: string,
): Promise<{ runMs: number; stopRemoveMs: number; nriMs?: number }> {
  const { env } = inst;
  const config = podConfig(env, name);
  const before = inst.metrics ? await scrapeMetric(inst.metrics, WIRE_SUM) : 0;
  const t0 = process.hrtime.bigint();
  const id = await env.cri.runPodSandbox(config, "");
  const runMs = ms(t0);
  const after = inst.metrics ? await scrapeMetric(inst.metrics, WIRE_SUM) : 0;
  inst.nkitd?.track(id);
  const t1 = process.hrtime.bigint();
  await env.cri.stopPodSandbox(id);
  await env.cri.removePodSandbox(id);
  const stopRemoveMs = ms(t1);
  return inst.metrics ? { runMs, stopRemoveMs, nriMs: (after - before) * 1000 } : { runMs, stopRemoveMs };
}

/** One CNI plugin call, exec'd as libcni does; returns its wall time (spawn included). */
function cniCall(bin: string, config: string, command: string, id: string, netnsPath: string): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(bin, [], {
    input: config,
    env: {
      CNI_COMMAND: command,
      CNI_CONTAINERID: id,
      CNI_NETNS: netnsPath,
      CNI_IFNAME: "eth0",
      CNI_PATH: "/usr/lib/cni",
    },
    encoding: "utf8",
  });
  const took = ms(t0);
  if (r.status !== 0) throw new Error(`${bin} ${command} ${id}: exit ${r.status}: ${r.stdout}${r.stderr}`);
  return took;
}

/** nkit-cni ADD then DEL (mode ipam), exec'd directly against the running nkitd. */
function cniCalls(n: Nkitd, calls: number, netnsPath: string): { add: number[]; del: number[] } {
  const config = JSON.stringify({
    cniVersion: "1.0.0",
    name: `nkb-direct-${randomBytes(3).toString("hex")}`,
    type: "nkit-cni",
    mode: "ipam",
    socket: n.cniSocket,
  });
  const add: number[] = [];
  const del: number[] = [];
  for (let i = 0; i < calls; i++) {
    const id = `nkb-${randomBytes(8).toString("hex")}`;
    add.push(cniCall(NKIT_CNI_BIN, config, "ADD", id, netnsPath));
    del.push(cniCall(NKIT_CNI_BIN, config, "DEL", id, netnsPath));
  }
  return { add, del };
}

/**
 * A whole pod network through CNI, as nerdctl and Nomad get it: nkit-cni in wire mode (the wiring
 * done by nkitd before ADD answers) against the stock bridge + host-local plugins, ADD then DEL,
 * each pod in a netns of its own (made and removed outside the timing), interleaved pod by pod.
 */
async function cniWireVersusBridge(
  inst: Instance,
  calls: number,
  warmup: number,
  cleanup: Cleanup,
): Promise<CniWireResult> {
  const n = inst.nkitd as Nkitd;
  const rnd = randomBytes(3).toString("hex");
  const nkitConfig = JSON.stringify({
    cniVersion: "1.0.0",
    name: `nkb-wire-${rnd}`,
    type: "nkit-cni",
    mode: "wire",
    socket: n.cniSocket,
  });
  const dataDir = mkdtempSync(join(tmpdir(), "nkb-hostlocal-"));
  const bridge = `nkb${rnd}cb`;
  const bridgeConfig = JSON.stringify({
    cniVersion: "1.0.0",
    name: `nkb-bridge-${rnd}`,
    type: "bridge",
    bridge,
    isGateway: false,
    ipMasq: false,
    hairpinMode: false,
    ipam: {
      type: "host-local",
      ranges: [[{ subnet: `10.${randomInt(100, 250)}.${randomInt(0, 255)}.0/24` }]],
      dataDir,
    },
  });
  const done = cleanup.defer(`bridge ${bridge}`, () => {
    spawnSync("ip", ["link", "del", bridge]);
    rmSync(dataDir, { recursive: true, force: true });
  });
  const out = {
    nkitAdd: [] as number[],
    nkitDel: [] as number[],
    bridgeAdd: [] as number[],
    bridgeDel: [] as number[],
  };
  const pod = (bin: string, config: string, add: number[], del: number[], counted: boolean): void => {
    const netns = `nkb-${randomBytes(4).toString("hex")}`;
    spawnSync("ip", ["netns", "add", netns]);
    try {
      const id = `nkb-${randomBytes(8).toString("hex")}`;
      const a = cniCall(bin, config, "ADD", id, `/run/netns/${netns}`);
      const d = cniCall(bin, config, "DEL", id, `/run/netns/${netns}`);
      if (counted) {
        add.push(a);
        del.push(d);
      }
    } finally {
      spawnSync("ip", ["netns", "del", netns]);
    }
  };
  // nkitd's own share of each counted call (mean, from its histograms) and the cost of a spawn
  // that does nothing, so the shim's and the runtime's parts can be told apart.
  const histograms = {
    add: 'nkit_cni_request_duration_seconds_{}{command="ADD",result="ok"}',
    del: 'nkit_cni_request_duration_seconds_{}{command="DEL",result="ok"}',
    wire: 'nkit_endpoint_wiring_duration_seconds_{}{op="wire",result="ok"}',
    unwire: 'nkit_endpoint_wiring_duration_seconds_{}{op="unwire",result="ok"}',
  };
  const series = Object.values(histograms).flatMap((h) => [h.replace("{}", "sum"), h.replace("{}", "count")]);
  const served = async () => (inst.metrics ? await scrapeMetrics(inst.metrics, series) : undefined);
  let before: Awaited<ReturnType<typeof served>>;
  try {
    for (let i = 0; i < warmup + calls; i++) {
      const counted = i >= warmup;
      if (i === warmup) before = await served();
      const nkitFirst = i % 2 === 0;
      for (const which of nkitFirst ? ["nkit", "bridge"] : ["bridge", "nkit"]) {
        if (which === "nkit") pod(NKIT_CNI_BIN, nkitConfig, out.nkitAdd, out.nkitDel, counted);
        else pod("/usr/lib/cni/bridge", bridgeConfig, out.bridgeAdd, out.bridgeDel, counted);
      }
    }
  } finally {
    void done();
  }
  const after = await served();
  // Mean ms per observation of histogram k between the two scrapes.
  const mean = (a: number[], b: number[], k: number) => {
    const n = (a[2 * k + 1] ?? 0) - (b[2 * k + 1] ?? 0);
    return n > 0 ? Math.round((((a[2 * k] ?? 0) - (b[2 * k] ?? 0)) / n) * 1e6) / 1e3 : 0;
  };
  const nkitd =
    before && after
      ? {
          addMs: mean(after, before, 0),
          delMs: mean(after, before, 1),
          wireMs: mean(after, before, 2),
          unwireMs: mean(after, before, 3),
        }
      : undefined;
  const spawn: number[] = [];
  for (let i = 0; i < 30; i++) spawn.push(cniCall(NKIT_CNI_BIN, "{}", "VERSION", "version", ""));
  const sum = (a: number[], b: number[]) => a.map((x, i) => x + (b[i] ?? 0));
  return {
    ...(nkitd ? { nkitd } : {}),
    shimVersion: latency(spawn),
    nkitAdd: latency(out.nkitAdd),
    nkitDel: latency(out.nkitDel),
    nkitAddDel: latency(sum(out.nkitAdd, out.nkitDel)),
    bridgeAdd: latency(out.bridgeAdd),
    bridgeDel: latency(out.bridgeDel),
    bridgeAddDel: latency(sum(out.bridgeAdd, out.bridgeDel)),
  };
}

async function runLane(lane: Lane, cfg: Config, cleanup: Cleanup): Promise<LaneResult> {
  const errors: string[] = [];
  const order: CniVariant[] = ["nkit", "bridge", "noop"];
  log(`lane ${lane}: starting 3 private containerds (+ nkitd)`);
  const insts: Instance[] = [];
  for (const v of order) insts.push(await startVariant(lane, v, cleanup));
  const run: Record<CniVariant, number[]> = { nkit: [], bridge: [], noop: [] };
  const stopRemove: Record<CniVariant, number[]> = { nkit: [], bridge: [], noop: [] };
  const nri: number[] = [];
  for (let i = 0; i < cfg.warmup + cfg.pods; i++) {
    // rotate the order so no variant always runs right after another
    for (let k = 0; k < insts.length; k++) {
      const inst = insts[(i + k) % insts.length]!;
      try {
        const r = await onePod(inst, `b${i}-${inst.variant}`);
        if (i < cfg.warmup) continue;
        run[inst.variant].push(r.runMs);
        stopRemove[inst.variant].push(r.stopRemoveMs);
        if (r.nriMs !== undefined) nri.push(r.nriMs);
      } catch (e) {
        errors.push(`${inst.variant} pod ${i}: ${(e as Error).message.split("\n")[0]}`);
      }
    }
    if ((i + 1) % 10 === 0) log(`lane ${lane}: ${i + 1}/${cfg.warmup + cfg.pods} pods per variant`);
  }
  const nk = insts[0]!;
  const netns = `nkb-${randomBytes(3).toString("hex")}`;
  spawnSync("ip", ["netns", "add", netns]);
  const delNetns = cleanup.defer(`netns ${netns}`, () => spawnSync("ip", ["netns", "del", netns]));
  let cni = { add: [] as number[], del: [] as number[] };
  let cniWire: CniWireResult | undefined;
  try {
    cni = cniCalls(nk.nkitd!, cfg.cniCalls, `/run/netns/${netns}`);
    cniWire = await cniWireVersusBridge(nk, cfg.cniCalls, 3, cleanup);
  } catch (e) {
    errors.push(`nkit-cni: ${(e as Error).message}`);
  }
  await delNetns();
  const version = nk.env.version;
  for (const inst of insts.reverse()) await inst.env.stop();
  return {
    lane,
    containerdVersion: version,
    runPodSandbox: { nkit: latency(run.nkit), bridge: latency(run.bridge), noop: latency(run.noop) },
    stopRemove: {
      nkit: latency(stopRemove.nkit),
      bridge: latency(stopRemove.bridge),
      noop: latency(stopRemove.noop),
    },
    nriRun: latency(nri),
    cniAdd: latency(cni.add),
    cniDel: latency(cni.del),
    ...(cniWire ? { cniWire } : {}),
    errors,
  };
}

export async function main(argv: string[]): Promise<number> {
  const cfg = harnessConfig("bench:cri", argv, USAGE, parseConfig, log);
  if (typeof cfg === "number") return cfg;
  const started = new Date();
  const loadavgStart = loadavg();
  const { results: lanes, failure } = await runLanes("bench:cri", cfg.lanes, log, (lane, cleanup) =>
    runLane(lane, cfg, cleanup),
  );
  if (lanes.length === 0) return 1;
  const report: CriReport = {
    startedAt: started.toISOString(),
    finishedAt: new Date().toISOString(),
    host: { cpus: cpus().length, kernel: release(), loadavgStart, loadavgEnd: loadavg() },
    config: { pods: cfg.pods, warmup: cfg.warmup, cniCalls: cfg.cniCalls, interleaved: true },
    lanes,
    targets: lanes.flatMap(evaluate),
  };
  const base = keepRun(cfg.out, "cri", started, report, markdown(report), !failure);
  for (const t of report.targets) {
    log(`[${t.pass ? "PASS" : "MISS"}] lane ${t.lane}: ${t.name}: ${t.got} (want ${t.want})`);
  }
  for (const l of lanes) {
    const v = (Object.keys(VARIANTS) as CniVariant[])
      .map((k) => `${k} p50 ${l.runPodSandbox[k].p50} / p99 ${l.runPodSandbox[k].p99} ms`)
      .join("; ");
    log(`lane ${l.lane} RunPodSandbox: ${v}`);
  }
  log(`results: ${base}.{json,md}${failure ? "" : " (+ cri-latest.{json,md})"}`);
  return failure ? 1 : 0;
}
