// nkitd for an e2e suite: the real daemon from dist/ (`node dist/daemon/main.js --config <yaml>`),
// registered as an external NRI plugin on the suite's private containerd, serving nkit-cni on
// <dir>/run/cni.sock. Everything it owns is unique to the suite: state/run dirs (under the containerd
// instance dir, so they go with it), a bpffs dir, random v4+v6 pod CIDRs, and an uplink veth whose peer
// sits in a netns the helper creates (never the host's real uplink). The uplink carries host addresses
// (v4 /32, v6 /128) that tests bind host-side TCP servers to.
//
// What a user installs comes from `nkit install` itself, run with dir overrides into the instance: the
// conflist and nkit-cni into containerd's private CNI dirs, the unit and tmpfiles entry into a private
// root (<instance>/nkitd/root). nkitd's dirs are made by applying that tmpfiles entry to the root, and
// nkitd runs as the unit's ExecStart says.
//
//   const env = await startContainerd({ cni: nkitCni(network), ... })  // runs `nkit install`
//   const nkitd = await startNkitd(env)             // registers env.defer(() => nkitd.cleanup())
//   await nkitd.waitLog((l) => l.msg === "NRI connected")
//   const eps = await nkitd.cli<EndpointJson[]>(["endpoint", "list"])
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes, randomInt } from "node:crypto";
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";
import type * as Api from "../../../src/api/types.js";
import { hostIfName } from "../../../src/datapath/naming.js";
import { IpAddress, IpPrefix } from "../../../src/util/ip.js";
import { RUN_ID, uniqueBpffsDir, uniqueIfName, uniqueNetnsName } from "../../helpers/names.js";
import { REPO_ROOT } from "../../helpers/root.js";
import type { InstancePaths } from "./config.js";
import type { ContainerdEnv, Pod, StartOptions } from "./containerd.js";
import { killAndWait, processAlive, sh, sleep, unixSocketListening, waitFor } from "./host.js";
import type { Lane } from "./lanes.js";

export { REPO_ROOT };

export const NKITD_MAIN = join(REPO_ROOT, "dist", "daemon", "main.js");
export const NKIT_CLI = join(REPO_ROOT, "dist", "cli", "main.js");
export const NKIT_CNI_BIN = join(REPO_ROOT, "native", "cni", "build", "nkit-cni");

/** nkitd's dir inside a containerd instance dir (install root, log). */
export const nkitdDir = (instanceDir: string): string => join(instanceDir, "nkitd");
/** The root `nkit install` writes into and the tmpfiles entry is applied to. */
export const nkitRoot = (instanceDir: string): string => join(nkitdDir(instanceDir), "root");
/** nkitd's paths under the root, as the tmpfiles entry and the unit name them. */
export function nkitRootPaths(instanceDir: string): {
  unit: string;
  tmpfiles: string;
  config: string;
  manifest: string;
  state: string;
  run: string;
} {
  const r = nkitRoot(instanceDir);
  return {
    unit: join(r, "etc/systemd/system/nkitd.service"),
    tmpfiles: join(r, "etc/tmpfiles.d/nkit.conf"),
    config: join(r, "etc/nkit/nkitd.yaml"),
    manifest: join(r, "var/lib/nkit/install-manifest.json"),
    state: join(r, "var/lib/nkit"),
    run: join(r, "run/nkit"),
  };
}
export const nkitdCniSocket = (instanceDir: string): string =>
  join(nkitRootPaths(instanceDir).run, "cni.sock");

/** The `nkit install` arguments that point every path it writes into the instance. */
export function nkitInstallArgs(p: InstancePaths, network: string): string[] {
  const rp = nkitRootPaths(p.dir);
  return [
    "--systemd-dir",
    dirname(rp.unit),
    "--tmpfiles-dir",
    dirname(rp.tmpfiles),
    "--config",
    rp.config,
    "--manifest",
    rp.manifest,
    "--cni-bin-dir",
    p.cniBinDir,
    "--cni-conf-dir",
    p.cniConfDir,
    "--containerd-config",
    p.config,
    "--cni-socket",
    nkitdCniSocket(p.dir),
    "--cni-network",
    network,
  ];
}

/** Runs `nkit install` into the instance (conflist, nkit-cni, unit, tmpfiles). */
export async function nkitInstall(p: InstancePaths, network: string): Promise<void> {
  assertNkitBuilt();
  await sh(process.execPath, [NKIT_CLI, "--json", "install", ...nkitInstallArgs(p, network)]);
}

/** A CNI network name unique to this suite (the conflist's and nkitd's). */
export const uniqueNkitNetwork = (): string => `nkit-e2e-${RUN_ID}-${randomInt(1 << 24).toString(16)}`;

/** startContainerd's cni options for pods through nkit: loopback linked, the rest by `nkit install`. */
export function nkitCni(network: string): NonNullable<StartOptions["cni"]> {
  return { systemPlugins: ["loopback"], install: (p) => nkitInstall(p, network) };
}

/** startContainerd options for a suite that runs pods through nkit, NRI on (2 s request timeout). */
export function nkitContainerdOptions(lane: Lane, name: string, network: string): StartOptions {
  return { lane, name, cni: nkitCni(network), nri: { enabled: true, requestTimeout: "2s" } };
}

/** The unit's ExecStart as argv (the unit nkit install writes quotes nothing). */
export function unitExecStart(unitFile: string): string[] {
  const line = /^ExecStart=(.*)$/m.exec(readFileSync(unitFile, "utf8"))?.[1];
  if (!line) throw new Error(`${unitFile} has no ExecStart`);
  if (/["'\\$%]/.test(line)) throw new Error(`${unitFile}: ExecStart needs systemd quoting rules: ${line}`);
  return line.trim().split(/\s+/);
}

export function assertNkitBuilt(): void {
  for (const f of [NKITD_MAIN, NKIT_CLI, NKIT_CNI_BIN]) {
    if (!existsSync(f)) throw new Error(`${f} is missing: run \`npm run build\` first`);
  }
}

/** A pino log line of nkitd. */
export interface NkitdLogLine {
  level: number;
  msg: string;
  time?: number;
  [key: string]: unknown;
}

export interface NkitdOptions {
  /** Default "debug" (the NRI event lines are debug). */
  logLevel?: string;
  /** metrics.listen, e.g. "127.0.0.1:0" (default off). */
  metricsListen?: string;
  /** Override the random pod CIDRs (one or two). */
  podCIDRs?: string[];
}

/** Random private pod CIDRs (10.150-199.x.0/24, fdXX:XXXX:XXXX::/64) and host addresses outside them. */
function randomNets(): { v4: string; v6: string; hostV4: string; hostV6: string } {
  const a = randomInt(150, 200);
  const b = randomInt(0, 255);
  const h = randomBytes(5).toString("hex");
  const v6p = `fd${h.slice(0, 2)}:${h.slice(2, 6)}:${h.slice(6, 10)}`;
  // Canonical text (no leading zeros in a group), as nkitd and the runtimes print addresses.
  return {
    v4: `10.${a}.${b}.0/24`,
    v6: IpPrefix.parse(`${v6p}:1::/64`).toString(),
    hostV4: `10.${a}.${b + 1}.1`,
    hostV6: IpAddress.parse(`${v6p}:ff::1`).toString(),
  };
}

export class Nkitd {
  readonly dir: string;
  readonly stateDir: string;
  readonly runDir: string;
  readonly bpffsDir: string = uniqueBpffsDir("e2e");
  readonly configFile: string;
  /** The unit and tmpfiles entry `nkit install` wrote for this instance. */
  readonly unitFile: string;
  readonly tmpfilesFile: string;
  readonly logFile: string;
  readonly apiSocket: string;
  readonly cniSocket: string;
  readonly uplink: string = uniqueIfName("u");
  readonly uplinkPeer: string = `${this.uplink}p`;
  readonly uplinkNetns: string = uniqueNetnsName("up");
  readonly podCIDRs: string[];
  /** Host addresses on the uplink: bind host-side servers here. */
  readonly hostV4: string;
  readonly hostV6: string;
  /** Every parsed log line of every nkitd process this helper started, in order. */
  readonly lines: NkitdLogLine[] = [];
  private child: ChildProcess | undefined;
  private exit: Promise<void> = Promise.resolve();
  private readonly ids = new Set<string>();
  private cleaned = false;

  constructor(
    readonly env: ContainerdEnv,
    private readonly o: NkitdOptions = {},
  ) {
    this.dir = nkitdDir(env.paths.dir);
    const rp = nkitRootPaths(env.paths.dir);
    this.unitFile = rp.unit;
    this.tmpfilesFile = rp.tmpfiles;
    this.stateDir = rp.state;
    this.runDir = rp.run;
    this.configFile = rp.config;
    this.logFile = join(this.dir, "nkitd.log");
    this.apiSocket = join(this.runDir, "nkit.sock");
    this.cniSocket = nkitdCniSocket(env.paths.dir);
    const nets = randomNets();
    this.podCIDRs = o.podCIDRs ?? [nets.v4, nets.v6];
    this.hostV4 = nets.hostV4;
    this.hostV6 = nets.hostV6;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child?.pid !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Applies the installed tmpfiles entry, creates the uplink and writes the config (once). */
  async prepare(): Promise<void> {
    for (const f of [this.unitFile, this.tmpfilesFile]) {
      if (!existsSync(f)) throw new Error(`${f} is missing: start containerd with cni: nkitCni(network)`);
    }
    mkdirSync(this.dir, { recursive: true });
    await sh("systemd-tmpfiles", ["--create", `--root=${nkitRoot(this.env.paths.dir)}`, this.tmpfilesFile]);
    await sh("ip", ["netns", "add", this.uplinkNetns]);
    await sh("ip", ["link", "add", this.uplink, "type", "veth", "peer", "name", this.uplinkPeer]);
    await sh("ip", ["link", "set", this.uplinkPeer, "netns", this.uplinkNetns]);
    await sh("ip", ["-n", this.uplinkNetns, "link", "set", this.uplinkPeer, "up"]);
    await sh("ip", ["addr", "add", `${this.hostV4}/32`, "dev", this.uplink]);
    await sh("ip", ["-6", "addr", "add", `${this.hostV6}/128`, "dev", this.uplink, "nodad"]);
    await sh("ip", ["link", "set", this.uplink, "up"]);
    const lines = [
      "datapath: auto",
      `podCIDRs: [${this.podCIDRs.map((c) => JSON.stringify(c)).join(", ")}]`,
      `uplinks: [${this.uplink}]`,
      `paths: {state: ${this.stateDir}, run: ${this.runDir}, bpffs: ${this.bpffsDir}}`,
      `nri: {enabled: true, socket: ${this.env.paths.nriSocket}, index: "10"}`,
      `containerd: {socket: ${this.env.paths.grpcSocket}}`,
      `log: {level: ${this.o.logLevel ?? "debug"}}`,
      `metrics: {listen: ${JSON.stringify(this.o.metricsListen ?? "")}}`,
    ];
    writeFileSync(this.configFile, `${lines.join("\n")}\n`);
  }

  /** Spawns nkitd and waits for "nkitd running" (not for NRI: see waitNri). */
  async start(): Promise<void> {
    if (this.running) throw new Error("nkitd is already running");
    const from = this.lines.length;
    const out = openSync(this.logFile, "a");
    let child: ChildProcess;
    try {
      const [cmd, ...args] = unitExecStart(this.unitFile);
      if (!cmd) throw new Error(`${this.unitFile}: empty ExecStart`);
      child = spawn(cmd, args, { stdio: ["ignore", "pipe", out] });
    } finally {
      closeSync(out);
    }
    this.child = child;
    this.exit = new Promise((resolve) => child.once("exit", () => resolve()));
    let partial = "";
    child.stdout?.on("data", (d: Buffer) => {
      writeFileSync(this.logFile, d, { flag: "a" });
      partial += d.toString();
      const parts = partial.split("\n");
      partial = parts.pop() ?? "";
      for (const p of parts) {
        if (!p.trim()) continue;
        try {
          this.lines.push(JSON.parse(p) as NkitdLogLine);
        } catch {
          this.lines.push({ level: 30, msg: p });
        }
      }
    });
    await this.waitLog((l) => l.msg === "nkitd running", 30_000, from);
  }

  /** Resolves with the first log line (at or after index `from`) matching pred. */
  async waitLog(pred: (l: NkitdLogLine) => boolean, timeoutMs = 20_000, from = 0): Promise<NkitdLogLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.lines.slice(from).find(pred);
      if (hit) return hit;
      if (this.child && !this.running) {
        const how = this.child.exitCode ?? this.child.signalCode;
        throw new Error(`nkitd exited (${how}) before the awaited log line:\n${this.logTail()}`);
      }
      if (Date.now() > deadline) {
        throw new Error(`timed out after ${timeoutMs} ms waiting for an nkitd log line:\n${this.logTail()}`);
      }
      await sleep(50);
    }
  }

  /** Waits until nkitd's NRI plugin is connected and synchronized (lines at or after `from`). */
  async waitNri(from = 0, timeoutMs = 30_000): Promise<NkitdLogLine> {
    await this.waitLog((l) => l.msg === "NRI connected", timeoutMs, from);
    return await this.waitLog((l) => l.msg === "synchronized with the runtime", timeoutMs, from);
  }

  logTail(n = 40): string {
    try {
      return readFileSync(this.logFile, "utf8").trimEnd().split("\n").slice(-n).join("\n");
    } catch {
      return "(no nkitd log)";
    }
  }

  /** Sends a signal and waits for the process to exit. */
  async kill(signal: NodeJS.Signals = "SIGTERM", timeoutMs = 15_000): Promise<void> {
    const c = this.child;
    if (!c || !this.running) return;
    c.kill(signal);
    const timer = setTimeout(() => c.kill("SIGKILL"), timeoutMs);
    await this.exit;
    clearTimeout(timer);
  }

  /** `nkit --socket <api> --json <args>`, parsed. */
  async cli<T>(args: string[]): Promise<T> {
    const out = await sh(process.execPath, [NKIT_CLI, "--socket", this.apiSocket, "--json", ...args], 30_000);
    return JSON.parse(out) as T;
  }

  /** Remembers an endpoint id so cleanup can remove its host device if nkitd could not. */
  track(id: string): void {
    this.ids.add(id);
  }

  /** Stops nkitd and removes everything it and the helper made. Safe to repeat. */
  async cleanup(): Promise<void> {
    if (this.cleaned) return;
    this.cleaned = true;
    const errors: unknown[] = [];
    const step = async (fn: () => unknown): Promise<void> => {
      try {
        await fn();
      } catch (e) {
        errors.push(e);
      }
    };
    await step(() => this.kill("SIGTERM"));
    // a pod whose sandbox was removed while nkitd was down may have left its host device and routes
    for (const id of this.ids) {
      await step(async () => {
        const dev = hostIfName(id);
        if (existsSync(`/sys/class/net/${dev}`)) await sh("ip", ["link", "del", dev]);
      });
    }
    await step(() => rmSync(this.bpffsDir, { recursive: true, force: true }));
    await step(async () => {
      if (existsSync(`/sys/class/net/${this.uplink}`)) await sh("ip", ["link", "del", this.uplink]);
    });
    await step(async () => {
      if (existsSync(`/run/netns/${this.uplinkNetns}`)) await sh("ip", ["netns", "del", this.uplinkNetns]);
    });
    if (errors.length > 0) throw new AggregateError(errors, "nkitd e2e cleanup had errors");
  }
}

/**
 * Starts nkitd for a running containerd instance: uplink, config, process. The cleanup is registered
 * with env.defer first, so it runs after the harness removed every pod (CNI DEL still reaches nkitd)
 * and before containerd stops. Does not wait for NRI.
 */
export async function startNkitd(env: ContainerdEnv, o: NkitdOptions = {}): Promise<Nkitd> {
  assertNkitBuilt();
  const n = new Nkitd(env, o);
  env.defer(() => n.cleanup());
  await n.prepare();
  await n.start();
  return n;
}

/**
 * Restarts the suite's containerd (SIGTERM, then a new process on the same config), as a service
 * restart does: pods and shims keep running. The harness only knows the first process, so this
 * registers a cleanup that removes every pod through the new one (nkitd is still up then: the cleanup
 * is registered after nkitd's and deferred cleanups run LIFO) and stops it. Returns the new pid.
 */
export async function restartContainerd(env: ContainerdEnv): Promise<number> {
  const old = env.pid;
  if (old !== undefined) await killAndWait(old, 15_000);
  const p = env.paths;
  const tmp = join(p.dir, "tmp");
  mkdirSync(tmp, { recursive: true });
  const log = openSync(p.log, "a");
  let child: ChildProcess;
  try {
    child = spawn(env.binaries.containerd, ["--config", p.config], {
      detached: true,
      stdio: ["ignore", log, log],
      env: {
        PATH: `${env.binaries.binDir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
        TMPDIR: tmp,
      },
    });
  } finally {
    closeSync(log);
  }
  child.unref();
  const pid = child.pid;
  if (pid === undefined) throw new Error("could not spawn containerd");
  // the crash sweeper kills the instance's containerd by this pid
  writeFileSync(p.pidFile, `${pid}\n`);
  env.defer(async () => {
    const errors = processAlive(pid) ? await env.removeAllPods() : [];
    await killAndWait(pid, 15_000);
    if (errors.length > 0) throw new AggregateError(errors, "removing pods after the containerd restart");
  });
  await waitFor(
    "the restarted containerd's CRI",
    async () => {
      if (!processAlive(pid)) throw new Error(`restarted containerd exited:\n${env.logTail()}`);
      return await env.cri.version({ timeoutMs: 1_000 }).catch(() => undefined);
    },
    30_000,
  );
  await waitFor(
    "the restarted containerd's NRI socket",
    () => unixSocketListening(p.nriSocket) || undefined,
    10_000,
  );
  await env.waitReady(true);
  return pid;
}

// ------------------------------------------------------------------------------------ what is left

// `nkit ... --json` output: the API's messages (src/api/types.ts) as src/cli/commands.ts prints them,
// with only the address families that are set and uint64 counters/sizes as numbers.

export type EndpointJson = Omit<Api.Endpoint, "addresses"> & { addresses: Partial<Api.Addresses> };

export type CounterJson = Pick<Api.Counter, "reason" | "drop"> & { packets: number; bytes: number };

export interface IpamJson {
  pools: (Omit<Api.Pool, "size"> & { size: number })[];
  allocations: (Pick<Api.Allocation, "id"> & Partial<Api.Addresses>)[];
}

export interface MapDumpJson {
  map: { name: string };
  entries: { key: unknown; value: unknown }[];
}

/** A pod as far as leak checks care: its sandbox id and addresses. */
export interface PodRef {
  id: string;
  ips: string[];
}

const podIps = (p: Pod): string[] => [p.ip, ...p.additionalIps];
/** The pod's IPv4 address as CRI reports it ("" if none). */
export const podV4 = (p: Pod): string => podIps(p).find((ip) => ip.includes(".")) ?? "";
/** The pod's IPv6 address as CRI reports it ("" if none). */
export const podV6 = (p: Pod): string => podIps(p).find((ip) => ip.includes(":")) ?? "";
export const podRef = (p: Pod): PodRef => ({ id: p.id, ips: podIps(p) });

interface IpRoute {
  dst: string;
  dev?: string;
}
interface IpNeigh {
  dst: string;
  dev?: string;
}

const bare = (dst: string): string => dst.replace(/\/(32|128)$/, "");

/**
 * Everything nkit could have left of these pods on the host and in nkitd (which must be running):
 * the host device nk<hash>, host routes and neighbours for their IPs, nk_endpoints entries, IPAM
 * allocations, endpoints, pins under <bpffs>/endpoints, CNI attachment records. [] means clean.
 */
export async function leftovers(n: Nkitd, pods: readonly PodRef[]): Promise<string[]> {
  const found: string[] = [];
  const ips = new Set(pods.flatMap((p) => p.ips));
  for (const p of pods) {
    const dev = hostIfName(p.id);
    // The device's deletion follows the unwire's answer (EndpointManager.unwire).
    const gone = () => (existsSync(`/sys/class/net/${dev}`) ? undefined : true);
    await waitFor(`host device ${dev} to go`, gone, 5_000).catch(() =>
      found.push(`host device ${dev} of ${p.id}`),
    );
    if (existsSync(join(n.bpffsDir, "endpoints", dev))) found.push(`pins ${n.bpffsDir}/endpoints/${dev}`);
  }
  for (const fam of ["-4", "-6"]) {
    const routes = JSON.parse(await sh("ip", ["-j", fam, "route", "show", "table", "all"])) as IpRoute[];
    for (const r of routes) if (ips.has(bare(r.dst))) found.push(`route ${r.dst} dev ${r.dev}`);
    const neigh = JSON.parse(await sh("ip", ["-j", fam, "neigh", "show"])) as IpNeigh[];
    for (const x of neigh) if (ips.has(x.dst)) found.push(`neighbour ${x.dst} dev ${x.dev}`);
  }
  const ids = new Set(pods.map((p) => p.id));
  const dump = await n.cli<MapDumpJson>(["bpf", "map", "dump", "nk_endpoints"]);
  for (const e of dump.entries) {
    const text = JSON.stringify(e);
    if ([...ips].some((ip) => text.includes(`"${ip}"`))) found.push(`nk_endpoints entry ${text}`);
  }
  const ipam = await n.cli<IpamJson>(["ipam"]);
  for (const a of ipam.allocations) if (ids.has(a.id)) found.push(`IPAM allocation ${JSON.stringify(a)}`);
  const eps = await n.cli<EndpointJson[]>(["endpoint", "list"]);
  for (const e of eps) if (ids.has(e.id)) found.push(`endpoint ${e.id} (${e.hostIfName})`);
  const attachments = join(n.stateDir, "cni-attachments");
  for (const name of existsSync(attachments) ? readdirSync(attachments) : []) {
    const text = readFileSync(join(attachments, name), "utf8");
    for (const id of ids) if (text.includes(id)) found.push(`CNI attachment record of ${id}`);
  }
  return found;
}

/** nkitd holds nothing at all: no endpoints, allocations, nk_endpoints entries or endpoint pins. */
export async function nkitdEmpty(n: Nkitd): Promise<string[]> {
  const found: string[] = [];
  const eps = await n.cli<EndpointJson[]>(["endpoint", "list"]);
  for (const e of eps) found.push(`endpoint ${e.id}`);
  const ipam = await n.cli<IpamJson>(["ipam"]);
  for (const a of ipam.allocations) found.push(`IPAM allocation ${JSON.stringify(a)}`);
  const dump = await n.cli<MapDumpJson>(["bpf", "map", "dump", "nk_endpoints"]);
  for (const e of dump.entries) found.push(`nk_endpoints entry ${JSON.stringify(e)}`);
  const epPins = join(n.bpffsDir, "endpoints");
  if (existsSync(epPins)) for (const d of readdirSync(epPins)) found.push(`pins ${epPins}/${d}`);
  return found;
}
