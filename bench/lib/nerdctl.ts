// The nerdctl benchmark run (`npm run bench:nerdctl`): `nerdctl run -d` on nkit (`--network <nkit>`,
// wired at ADD) vs nerdctl's own default bridge network (`--network bridge`: bridge + host-local +
// portmap + firewall + tuning), interleaved container by container on one private containerd per
// lane. Measured: from the start of `nerdctl run` to the first TCP connect the container's server
// accepts (host -> container address), i.e. what a user waits for. Writes
// bench/results/nerdctl-<ts>.{json,md} and nerdctl-latest.{json,md}. Uses the e2e harness.
import { connect } from "node:net";
import { cpus, loadavg, release } from "node:os";
import { parseArgs } from "node:util";
import { type ContainerdEnv, startContainerd } from "../../test/e2e/env/index.js";
import type { Lane } from "../../test/e2e/env/lanes.js";
import { Nerdctl } from "../../test/e2e/env/nerdctl.js";
import { nkitCni, startNkitd, uniqueNkitNetwork } from "../../test/e2e/env/nkit.js";
import { type Cleanup, removeLinkItMakes } from "./cleanup.js";
import { type LatencyMs, latency } from "./cri-report.js";
import { harnessProblem, keepRun, lanesOf, runLanes } from "./e2e-bench.js";
import { RESULTS_DIR } from "./paths.js";

const log = (m: string) => process.stderr.write(`${m}\n`);

const USAGE = `usage: npm run bench:nerdctl -- [options]   (root; needs npm run build and scripts/e2e/setup.sh)

  --containers N  containers per network (sequential, removed one by one)  [30]
  --warmup N      warm-up containers per network, not counted                [2]
  --lanes L       containerd lanes, comma-separated: 1.7,2                   [1.7,2 when lane 2 is built]
  --out DIR       results directory                                          [bench/results]
`;

type Network = "nkit" | "bridge";

interface LaneResult {
  lane: Lane;
  containerdVersion: string;
  /** `nerdctl run -d` start to the first accepted TCP connect, per network (ms). */
  startToConnect: Record<Network, LatencyMs>;
  /** `nerdctl run -d` until it returns, per network (ms). */
  run: Record<Network, LatencyMs>;
  errors: string[];
}

const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;

/** Resolves once a TCP connect to address:port is accepted (retrying every 2 ms), or rejects at the deadline. */
async function firstConnect(address: string, port: number, deadline: number): Promise<void> {
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: address, port, timeout: 500 }, () => {
        s.destroy();
        resolve(true);
      });
      s.on("error", () => resolve(false));
      s.on("timeout", () => {
        s.destroy();
        resolve(false);
      });
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`no TCP connect to ${address}:${port}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

async function oneContainer(
  nerdctl: Nerdctl,
  image: string,
  network: string,
  name: string,
): Promise<{ connectMs: number; runMs: number }> {
  const cmd = ["sh", "-c", "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 80 -h /www"];
  const t0 = process.hrtime.bigint();
  try {
    await nerdctl.ok(["run", "-d", "--name", name, "--network", network, image, ...cmd]);
    const runMs = ms(t0);
    const ip = (await nerdctl.ok(["inspect", "-f", "{{.NetworkSettings.IPAddress}}", name])).trim();
    if (!ip) throw new Error(`${name} has no IPv4 address on ${network}`);
    await firstConnect(ip, 80, Date.now() + 20_000);
    return { connectMs: ms(t0), runMs };
  } finally {
    await nerdctl.run(["rm", "-f", name]);
  }
}

async function runLane(
  lane: Lane,
  containers: number,
  warmup: number,
  cleanup: Cleanup,
): Promise<LaneResult> {
  const network = uniqueNkitNetwork();
  const env: ContainerdEnv = await startContainerd({
    lane,
    name: "bench-nerdctl",
    cni: {
      ...nkitCni(network),
      systemPlugins: ["loopback", "bridge", "host-local", "portmap", "firewall", "tuning"],
    },
    nri: { enabled: true, requestTimeout: "2s" },
    logLevel: "warn",
  });
  cleanup.defer(`containerd (${env.paths.dir})`, () => env.stop());
  // nerdctl's default network is a host bridge (nerdctl0, 10.4.0.0/24) the bridge plugin never removes;
  // left behind, it makes every later nerdctl refuse to start ("subnet overlaps"). Ours goes with the run.
  const dropBridge = removeLinkItMakes(cleanup, "nerdctl0");
  const nkitd = await startNkitd(env, { logLevel: "info" });
  await nkitd.waitNri();
  const nerdctl = new Nerdctl(env, "nkbench");
  env.defer(() => nerdctl.removeAll());
  const image = await nerdctl.loadBusybox();
  const networks: Record<Network, string> = { nkit: network, bridge: "bridge" };
  const connects: Record<Network, number[]> = { nkit: [], bridge: [] };
  const runs: Record<Network, number[]> = { nkit: [], bridge: [] };
  const errors: string[] = [];
  const order: Network[] = ["nkit", "bridge"];
  for (let i = 0; i < warmup + containers; i++) {
    // alternate which network goes first, so neither always follows the other
    for (let k = 0; k < order.length; k++) {
      const net = order[(i + k) % order.length]!;
      try {
        const r = await oneContainer(nerdctl, image, networks[net], `nkb-${net}-${i}`);
        if (i < warmup) continue;
        connects[net].push(r.connectMs);
        runs[net].push(r.runMs);
      } catch (e) {
        errors.push(`${net} container ${i}: ${(e as Error).message.split("\n").slice(0, 2).join(" ")}`);
      }
    }
    if ((i + 1) % 10 === 0) log(`lane ${lane}: ${i + 1}/${warmup + containers} containers per network`);
  }
  const version = env.version;
  await env.stop();
  await dropBridge(); // before the next lane's nerdctl checks the host's routes
  return {
    lane,
    containerdVersion: version,
    startToConnect: { nkit: latency(connects.nkit), bridge: latency(connects.bridge) },
    run: { nkit: latency(runs.nkit), bridge: latency(runs.bridge) },
    errors,
  };
}

function markdown(r: {
  startedAt: string;
  host: Record<string, unknown>;
  containers: number;
  lanes: LaneResult[];
}): string {
  const lines = [
    "# nerdctl: container start to first TCP connect, nkit vs nerdctl's bridge network",
    "",
    `Run ${r.startedAt} on ${JSON.stringify(r.host)}; ${r.containers} containers per network, interleaved, after warm-up.`,
    "Measured from the start of `nerdctl run -d --network N busybox httpd` to the first TCP connect the",
    "container's server accepts from the host (its address from `nerdctl inspect`); `run` is until",
    "`nerdctl run -d` returns. nkit: the conflist `nkit install` writes (nkit-cni, mode auto: wired at ADD)",
    "and nkitd (veth + tcx on this kernel). bridge: nerdctl's default network (bridge, host-local,",
    "portmap, firewall, tuning from Debian's containernetworking-plugins).",
    "",
    "| lane | containerd | network | start→connect p50 | p90 | p99 | run p50 | n |",
    "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const l of r.lanes) {
    for (const n of ["nkit", "bridge"] as const) {
      const c = l.startToConnect[n];
      lines.push(
        `| ${l.lane} | ${l.containerdVersion} | ${n} | ${c.p50} ms | ${c.p90} ms | ${c.p99} ms | ${l.run[n].p50} ms | ${c.n} |`,
      );
    }
  }
  lines.push("", "Target: nkit p50 ≤ bridge p50 (start to first connect).", "");
  for (const l of r.lanes) {
    const pass = l.startToConnect.nkit.p50 <= l.startToConnect.bridge.p50;
    lines.push(
      `- lane ${l.lane}: ${pass ? "PASS" : "MISS"}: nkit ${l.startToConnect.nkit.p50} ms vs bridge ${l.startToConnect.bridge.p50} ms (ratio ${(l.startToConnect.nkit.p50 / l.startToConnect.bridge.p50).toFixed(2)})`,
    );
    for (const e of l.errors) lines.push(`  - error: ${e}`);
  }
  return `${lines.join("\n")}\n`;
}

export async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      containers: { type: "string" },
      warmup: { type: "string" },
      lanes: { type: "string" },
      out: { type: "string" },
      help: { type: "boolean" },
    },
  });
  if (values.help) {
    log(USAGE);
    return 0;
  }
  const containers = Number(values.containers ?? 30);
  const warmup = Number(values.warmup ?? 2);
  if (!Number.isInteger(containers) || containers < 1 || !Number.isInteger(warmup) || warmup < 0) {
    log(`--containers and --warmup take whole numbers\n${USAGE}`);
    return 2;
  }
  let lanes: Lane[];
  try {
    lanes = lanesOf(values.lanes, log);
  } catch (e) {
    log(`${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  const problem = harnessProblem("bench:nerdctl");
  if (problem) {
    log(problem);
    return 1;
  }
  const started = new Date();
  const { results, failure } = await runLanes("bench:nerdctl", lanes, log, (lane, cleanup) =>
    runLane(lane, containers, warmup, cleanup),
  );
  if (results.length === 0) return 1;
  const report = {
    startedAt: started.toISOString(),
    finishedAt: new Date().toISOString(),
    host: { cpus: cpus().length, kernel: release(), loadavg: loadavg() },
    containers,
    warmup,
    lanes: results,
  };
  const base = keepRun(values.out ?? RESULTS_DIR, "nerdctl", started, report, markdown(report), !failure);
  for (const l of results) {
    log(
      `lane ${l.lane}: start→connect p50 nkit ${l.startToConnect.nkit.p50} ms, bridge ${l.startToConnect.bridge.p50} ms (${l.errors.length} errors)`,
    );
  }
  log(`results: ${base}.{json,md}${failure ? "" : " (+ nerdctl-latest.{json,md})"}`);
  return failure ? 1 : 0;
}
