// `npm run bench:load`: nkitd under load, as a user drives it. A real nkitd process (dist/, started
// with its shebang's node flags as /usr/bin/nkitd is; a private config, state, run and bpffs dirs,
// its own cgroup and uplink) gets 1,000 endpoints through the real nkit-cni shim (mode wire, as
// nerdctl and Nomad call it: 800 first, then 200 ADDs all at once), then 10,000 services through
// the API (as `nkit service add` sends them), then single service adds through gRPC and through the
// nkit CLI, then the endpoints' DELs (200 at once first). Per call latencies (spawn included), wall
// times and nkitd's RSS idle, at 1,000 endpoints, with the services too, once the endpoints are gone,
// and its peak (VmHWM). Writes bench/results/load-*.{json,md}; never asserts a
// time. Any failed call is an error: reported, and the run exits 1.
import { spawn } from "node:child_process";
import { randomInt } from "node:crypto";
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NkitClient } from "../../src/api/client.js";
import { serviceFromFlags } from "../../src/cli/services.js";
import { nkitdLaunch } from "../../src/package-files.js";
import { hostCgroup2 } from "../../src/services/socket-lb.js";
import { addNetns, delNetns } from "./baselines.js";
import { type LatencyMs, latency } from "./cri-report.js";
import { ROOT } from "./paths.js";
import { pool } from "./pool.js";
import { sh } from "./proc.js";
import { sideBySide } from "./results.js";
import { baseEnvironment } from "./runner.js";

const NKIT_CNI = join(ROOT, "native", "cni", "build", "nkit-cni");
const NKIT_CLI = join(ROOT, "dist", "cli", "main.js");

/** Runs a command to completion (stdin: `input`); rejects naming `what`, with its output, when it fails. */
function exec(
  what: string,
  cmd: string,
  args: string[],
  o: { env?: NodeJS.ProcessEnv; input?: string } = {},
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"], ...(o.env ? { env: o.env } : {}) });
    let out = "";
    child.stdout.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      out += d.toString();
    });
    child.once("error", reject);
    child.once("close", (code) =>
      code === 0 ? resolve() : reject(new Error(`${what}: exit ${code}: ${out.trim()}`)),
    );
    child.stdin.end(o.input ?? "");
  });
}

const log = (m: string) => process.stderr.write(`[bench:load] ${m}\n`);
const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

interface Phase {
  name: string;
  calls: number;
  concurrency: number;
  wallMs: number;
  latencyMs: LatencyMs;
  /** nkitd's resident set after the phase (MiB). */
  rssMiB: number;
  errors: number;
}

/** Resident and peak resident set of pid, MiB. */
function memory(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = (key: string) =>
    Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? Number.NaN);
  return { rss: Math.round(kib("VmRSS") / 102.4) / 10, hwm: Math.round(kib("VmHWM") / 102.4) / 10 };
}

/**
 * RSS once nkitd has sat idle for `ms`: V8 shrinks its heap only after a quiet spell (its memory
 * reducer starts 8 s after allocation slows), so a reading right after a burst shows the burst's
 * garbage; this one is what nkitd holds while it holds that state.
 */
async function settledRss(pid: number, ms: number): Promise<number> {
  await new Promise((r) => setTimeout(r, ms));
  return memory(pid).rss;
}

/** nkit-cni with the CNI environment and config a runtime gives it. */
function cni(command: "ADD" | "DEL", id: string, netns: string, config: string): Promise<void> {
  const env = {
    CNI_COMMAND: command,
    CNI_CONTAINERID: id,
    CNI_NETNS: netns,
    CNI_IFNAME: "eth0",
    CNI_PATH: "/opt/cni/bin",
  };
  return exec(`nkit-cni ${command} ${id}`, NKIT_CNI, [], { env, input: config });
}

export function main(argv: readonly string[]): Promise<number> {
  let failed = 0;
  return sideBySide("load", argv, log, async ({ cfg, started, prefix, cleanup }) => {
    const ENDPOINTS = cfg.quick ? 100 : 1_000;
    const BURST = cfg.quick ? 40 : 200;
    const SERVICES = cfg.quick ? 1_000 : 10_000;
    const BASE_CONCURRENCY = 16;
    const API_CONCURRENCY = 32;
    const SINGLE_ADDS = cfg.quick ? 50 : 200;
    const CLI_ADDS = cfg.quick ? 5 : 20;

    // --- a private nkitd: dirs, cgroup, uplink, config
    const dir = mkdtempSync(join(tmpdir(), `${prefix}-load-`));
    cleanup.defer(`dir ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
    const bpffs = `/sys/fs/bpf/${prefix}-load`;
    cleanup.defer(`pins ${bpffs}`, () => rmSync(bpffs, { recursive: true, force: true }));
    const cgroup = join(hostCgroup2(), `${prefix}-load`);
    cleanup.defer(`cgroup ${cgroup}`, () => rmdirSync(cgroup));
    mkdirSync(cgroup);
    const uplink = `${prefix}u`;
    cleanup.defer(`uplink ${uplink}`, () => sh("ip", ["link", "del", uplink]).catch(() => undefined));
    await sh("ip", ["link", "add", uplink, "type", "veth", "peer", "name", `${prefix}up`]);
    const cidr4 = `10.${randomInt(160, 200)}.0.0/20`;
    const cidr6 = `fd${randomInt(16, 255).toString(16)}:${randomInt(1, 0xffff).toString(16)}::/64`;
    const paths = { state: join(dir, "state"), run: join(dir, "run"), services: join(dir, "services.d") };
    const config = join(dir, "nkitd.yaml");
    writeFileSync(
      config,
      [
        "datapath: auto",
        `podCIDRs: [${cidr4}, "${cidr6}"]`,
        `uplinks: [${uplink}]`,
        `paths: {state: ${paths.state}, run: ${paths.run}, bpffs: ${bpffs}, services: ${paths.services}, cgroup: ${cgroup}}`,
        "nri: {enabled: false}",
        "log: {level: info}",
        "",
      ].join("\n"),
    );
    const logFile = join(dir, "nkitd.log");
    const out = openSync(logFile, "a");
    // NKIT_BENCH_HEAP_DIR: nkitd writes a V8 heap snapshot there after the services and at the
    // most endpoints (open them in Chrome DevTools' Memory tab to see what holds the memory).
    const heapDir = process.env.NKIT_BENCH_HEAP_DIR;
    if (heapDir) mkdirSync(heapDir, { recursive: true });
    const launch = nkitdLaunch();
    const nodeFlags = [
      ...launch.nodeArgs,
      ...(heapDir ? ["--heapsnapshot-signal=SIGUSR2", `--diagnostic-dir=${heapDir}`] : []),
      // Extra node flags for nkitd, to compare memory settings (e.g. "--max-semi-space-size=1").
      ...(process.env.NKIT_BENCH_NODE_FLAGS?.split(" ").filter(Boolean) ?? []),
    ];
    const nkitd = spawn(process.execPath, [...nodeFlags, launch.script, "--config", config], {
      env: { ...process.env, ...launch.env },
      stdio: ["ignore", out, out],
    });
    closeSync(out);
    const exited = new Promise<void>((r) => nkitd.once("exit", () => r()));
    cleanup.defer("nkitd", async () => {
      if (nkitd.exitCode === null && nkitd.signalCode === null) nkitd.kill("SIGTERM");
      await exited;
    });
    const pid = nkitd.pid ?? 0;
    const tStart = process.hrtime.bigint();
    for (let i = 0; !readFileSync(logFile, "utf8").includes('"nkitd running"'); i++) {
      if (nkitd.exitCode !== null || i > 600)
        throw new Error(`nkitd did not start:\n${readFileSync(logFile, "utf8")}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const startMs = Math.round(ms(tStart));
    const idle = memory(pid);
    const SETTLE_MS = cfg.quick ? 2_000 : 10_000;
    const settled = { idle: await settledRss(pid, SETTLE_MS), endpoints: 0, both: 0, services: 0 };
    log(`nkitd ${pid} running after ${startMs} ms, RSS ${idle.rss} MiB`);
    const api = new NkitClient(join(paths.run, "nkit.sock"), { timeoutMs: 60_000 });
    cleanup.defer("API client", () => api.close());

    const errors: string[] = [];
    const phases: Phase[] = [];
    const phase = (name: string, concurrency: number, r: Awaited<ReturnType<typeof pool>>) => {
      const p: Phase = {
        name,
        calls: r.samples.length + r.failed,
        concurrency,
        wallMs: r.wallMs,
        latencyMs: latency(r.samples),
        rssMiB: memory(pid).rss,
        errors: r.failed,
      };
      phases.push(p);
      log(
        `${name}: ${p.calls} calls in ${p.wallMs} ms, p50 ${p.latencyMs.p50} ms, p99 ${p.latencyMs.p99} ms, RSS ${p.rssMiB} MiB, ${p.errors} errors`,
      );
    };

    const snapshot = async (what: string) => {
      if (!heapDir) return;
      const before = new Set(readdirSync(heapDir));
      process.kill(pid, "SIGUSR2");
      for (let i = 0; i < 600; i++) {
        const made = readdirSync(heapDir).find((f) => !before.has(f) && f.endsWith(".heapsnapshot"));
        if (made) {
          // Complete once its size stops changing.
          const size = () => statSync(join(heapDir, made)).size;
          let last = -1;
          while (size() !== last) {
            last = size();
            await new Promise((r) => setTimeout(r, 500));
          }
          log(`heap snapshot ${what}: ${join(heapDir, made)}`);
          return;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      errors.push(`no heap snapshot ${what} in ${heapDir}`);
    };

    // --- endpoints through nkit-cni: a base load, then a burst of concurrent ADDs
    const names = Array.from({ length: ENDPOINTS }, (_, i) => `${prefix}-l${i}`);
    cleanup.defer("netns", () => delNetns(names));
    for (const n of names) await addNetns(n, cleanup);
    const conf = JSON.stringify({
      cniVersion: "1.0.0",
      name: "nkit",
      type: "nkit-cni",
      mode: "wire",
      socket: join(paths.run, "cni.sock"),
    });
    const id = (i: number) => `${prefix}-load-${i}`;
    const netns = (i: number) => `/run/netns/${names[i]}`;
    const base = ENDPOINTS - BURST;
    cleanup.defer("endpoints", async () => {
      for (let i = 0; i < ENDPOINTS; i++) await cni("DEL", id(i), netns(i), conf).catch(() => undefined);
    });
    phase(
      `endpoints: ADD to ${base} (${BASE_CONCURRENCY} at a time)`,
      BASE_CONCURRENCY,
      await pool(base, BASE_CONCURRENCY, (i) => cni("ADD", id(i), netns(i), conf), errors),
    );
    phase(
      `endpoints: ${BURST} concurrent ADDs (${base} → ${ENDPOINTS})`,
      BURST,
      await pool(BURST, BURST, (i) => cni("ADD", id(base + i), netns(base + i), conf), errors),
    );
    const wired = (await api.listEndpoints()).endpoints.length;
    if (wired !== ENDPOINTS) errors.push(`nkitd lists ${wired} endpoints, ${ENDPOINTS} were added`);
    const atEndpoints = memory(pid);
    settled.endpoints = await settledRss(pid, SETTLE_MS);
    await snapshot(`at ${ENDPOINTS} endpoints`);

    // --- services, as `nkit service add NAME --vip VIP:80 --backend ADDR:8080` sends them
    const vipBase = randomInt(96, 100);
    const addService = async (name: string, i: number): Promise<void> => {
      await api.addService(
        serviceFromFlags(name, {
          vip: [`10.${vipBase}.${i >> 8}.${i & 255}:80`],
          backend: [`10.252.${i >> 8}.${i & 255}:8080`],
        }),
      );
    };
    phase(
      "services: AddService",
      API_CONCURRENCY,
      await pool(SERVICES, API_CONCURRENCY, (i) => addService(`load-${i}`, i), errors),
    );
    const listed = (await api.listServices()).services.length;
    if (listed !== SERVICES) errors.push(`nkitd lists ${listed} services, ${SERVICES} were added`);
    const atBoth = memory(pid);
    settled.both = await settledRss(pid, SETTLE_MS);
    await snapshot(`at ${SERVICES} services and ${ENDPOINTS} endpoints`);

    // --- one more service at a time, as a user adds one: through gRPC, and through the CLI
    phase(
      "services: AddService one at a time (gRPC)",
      1,
      await pool(SINGLE_ADDS, 1, (i) => addService(`single-${i}`, SERVICES + i), errors),
    );
    phase(
      "services: `nkit service add` one at a time (CLI process)",
      1,
      await pool(
        CLI_ADDS,
        1,
        (i) => {
          const n = SERVICES + SINGLE_ADDS + i;
          return exec(`nkit service add cli-${i}`, process.execPath, [
            NKIT_CLI,
            "--socket",
            join(paths.run, "nkit.sock"),
            "service",
            "add",
            `cli-${i}`,
            "--vip",
            `10.${vipBase}.${n >> 8}.${n & 255}:80`,
            "--backend",
            `10.252.${n >> 8}.${n & 255}:8080`,
          ]);
        },
        errors,
      ),
    );

    // The floor under every CLI call: node starting and exiting with no code of ours.
    phase(
      "floor: `node -e 0` (the runtime's own start, no nkit code)",
      1,
      await pool(CLI_ADDS, 1, () => exec("node -e 0", process.execPath, ["-e", "0"]), errors),
    );

    // --- the endpoints go: a burst of concurrent DELs, then the rest
    phase(
      `endpoints: ${BURST} concurrent DELs (${ENDPOINTS} → ${base})`,
      BURST,
      await pool(BURST, BURST, (i) => cni("DEL", id(base + i), netns(base + i), conf), errors),
    );
    phase(
      `endpoints: DEL the other ${base} (${BASE_CONCURRENCY} at a time)`,
      BASE_CONCURRENCY,
      await pool(base, BASE_CONCURRENCY, (i) => cni("DEL", id(i), netns(i), conf), errors),
    );
    const left = (await api.listEndpoints()).endpoints.length;
    if (left !== 0) errors.push(`nkitd still lists ${left} endpoints after every DEL`);
    const final = memory(pid);
    settled.services = await settledRss(pid, SETTLE_MS);
    await snapshot("at the end");
    failed = errors.length;

    const result = {
      kind: "nkit-load",
      started: started.toISOString(),
      quick: cfg.quick,
      environment: baseEnvironment(),
      config: { endpoints: ENDPOINTS, burst: BURST, services: SERVICES },
      nkitd: {
        startMs,
        env: launch.env,
        nodeFlags,
        /** RSS after SETTLE_MS of quiet at each stage (the rss* fields: right after the stage's burst). */
        settleMs: SETTLE_MS,
        settledRssMiB: settled,
        idleRssMiB: idle.rss,
        rssAtEndpointsMiB: atEndpoints.rss,
        rssAtBothMiB: atBoth.rss,
        rssAtServicesMiB: final.rss,
        peakRssMiB: final.hwm,
      },
      phases,
      errors,
    };
    const md = [
      `# nkitd under load (${started.toISOString()}${cfg.quick ? ", quick" : ""})`,
      "",
      `A real nkitd (veth + tcx here, started as nkitd starts: what its #! line sets): ${ENDPOINTS} endpoints through nkit-cni (mode wire, the last ${BURST} ADDed at once), then ${SERVICES.toLocaleString("en")} services through the API, then single service adds through gRPC and through the \`nkit\` CLI, then every endpoint DELed (${BURST} at once first). CNI latencies include spawning nkit-cni; CLI latencies the whole nkit process.`,
      "",
      "| phase | calls | in flight | wall (ms) | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) | nkitd RSS after (MiB) | errors |",
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
      ...phases.map(
        (p) =>
          `| ${p.name} | ${p.calls} | ${p.concurrency} | ${p.wallMs} | ${p.latencyMs.p50} | ${p.latencyMs.p90} | ${p.latencyMs.p99} | ${p.latencyMs.max} | ${p.rssMiB} | ${p.errors} |`,
      ),
      "",
      `nkitd (as its #! line runs it: ${Object.entries(launch.env)
        .map(([k, v]) => `${k}=${v} `)
        .join(
          "",
        )}node ${nodeFlags.join(" ")}): started in ${startMs} ms. RSS (MiB) right after each stage, and after ${SETTLE_MS / 1000} s of quiet (V8 shrinks its heap only then):`,
      "",
      `| reading | idle | ${ENDPOINTS.toLocaleString("en")} endpoints | + ${SERVICES.toLocaleString("en")} services | ${SERVICES.toLocaleString("en")} services (endpoints gone) | peak (VmHWM) |`,
      "|---|---:|---:|---:|---:|---:|",
      `| right after | ${idle.rss} | ${atEndpoints.rss} | ${atBoth.rss} | ${final.rss} | ${final.hwm} |`,
      `| settled | ${settled.idle} | ${settled.endpoints} | ${settled.both} | ${settled.services} | |`,
      "",
      errors.length === 0
        ? "No error."
        : `**${errors.length} errors**:\n\n${errors.map((e) => `- ${e}`).join("\n")}`,
      "",
    ].join("\n");
    return { result, md };
  }).then((code) => (failed > 0 ? 1 : code));
}
