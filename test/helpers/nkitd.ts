// nkitd and nkit from dist/ as real processes, for the nkitd-* integration tests: a temp config with
// unique state/run/bpffs dirs, unique pod CIDRs and a test uplink veth; nkitd's JSON log; the CLI
// with --json. Everything is removed by the owning Scope, also when a test fails.

import { type ChildProcess, spawn } from "node:child_process";
import { randomInt } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NkitClient } from "../../src/api/client.js";
import type { Endpoint } from "../../src/api/types.js";
import { BpfLink, type LinkInfo } from "../../src/bpf/link.js";
import { PinDir } from "../../src/bpf/pins.js";
import { NKIT_ROUTE_PROTOCOL } from "../../src/daemon/peers.js";
import { Rtnl, type TcBpfFilter } from "../../src/netlink/index.js";
import { createTestCgroup } from "./cgroup.js";
import { uniqueBpffsDir, uniqueIfName } from "./names.js";
import { createNetns } from "./netns.js";
import { REPO_ROOT } from "./root.js";
import type { Scope } from "./scope.js";
import { run } from "./sys.js";

export const ROOT = REPO_ROOT;
export const NKIT = join(ROOT, "dist", "cli", "main.js");
export const NKITD = join(ROOT, "dist", "daemon", "main.js");

/** The tests run the built binaries: dist/ must exist and not be older than the daemon's source. */
export function requireDist(): void {
  if (!existsSync(NKITD) || !existsSync(NKIT)) throw new Error("dist/ is missing: run `npm run build` first");
  const src = join(ROOT, "src", "daemon", "main.ts");
  if (statSync(NKITD).mtimeMs < statSync(src).mtimeMs) {
    throw new Error("dist/daemon/main.js is older than src/daemon/main.ts: run `npm run build` first");
  }
}

export interface ProcExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface Proc {
  child: ChildProcess;
  done: Promise<ProcExit>;
  out(): string;
  err(): string;
  running(): boolean;
}

/** Spawns a process; with a scope it is SIGKILLed (and reaped) at cleanup if still running. */
export function spawnProc(cmd: string, args: readonly string[], scope?: Scope): Proc {
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  let exited = false;
  const done = new Promise<ProcExit>((resolve) => {
    child.once("error", (e) => {
      exited = true;
      resolve({ code: null, signal: null, stdout, stderr: `${stderr}${e.message}` });
    });
    child.once("close", (code, signal) => {
      exited = true;
      resolve({ code, signal, stdout, stderr });
    });
  });
  const p: Proc = { child, done, out: () => stdout, err: () => stderr, running: () => !exited };
  scope?.defer(async () => {
    if (p.running()) child.kill("SIGKILL");
    await done;
  });
  return p;
}

/** Resolves when pred holds; rejects after ms, or early when `alive` turns false. */
export async function until(
  pred: () => boolean,
  what: string,
  ms = 30_000,
  alive: () => boolean = () => true,
): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (!alive()) throw new Error(`gave up waiting for ${what}: the process exited`);
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export interface NkitdDirs {
  dir: string;
  stateDir: string;
  runDir: string;
  bpffsDir: string;
  socket: string;
}

/** A temp dir (state/, run/) and a private bpffs dir, removed at cleanup. */
export function nkitdDirs(scope: Scope, label: string): NkitdDirs {
  const dir = mkdtempSync(join(tmpdir(), `nkitd-${label}-`));
  scope.defer(() => rmSync(dir, { recursive: true, force: true }));
  const bpffsDir = uniqueBpffsDir(label);
  // Removing the pins detaches the links and frees the maps once nothing else holds them.
  scope.defer(() => new PinDir(bpffsDir).removeAll());
  const runDir = join(dir, "run");
  return { dir, stateDir: join(dir, "state"), runDir, bpffsDir, socket: join(runDir, "nkit.sock") };
}

export interface NkitdSetup extends NkitdDirs {
  config: string;
  uplink: string;
  cidr4: string;
  cidr6: string;
  /** The test's own cgroup v2 dir the socket load-balancer attaches to (never the host's root). */
  cgroup: string;
  /** The watched service files directory. */
  servicesDir: string;
}

/**
 * Dirs plus a config: unique pod CIDRs, a test veth (host netns, no traffic) as the only uplink,
 * NRI off, metrics off.
 */
export async function nkitdSetup(scope: Scope, label: string, extra: string[] = []): Promise<NkitdSetup> {
  const dirs = nkitdDirs(scope, label);
  const uplink = uniqueIfName("u");
  await run("ip", ["link", "add", uplink, "type", "veth", "peer", "name", `${uplink}p`]);
  scope.defer(() => run("ip", ["link", "del", uplink]).catch(() => undefined));
  const cidr4 = `10.${randomInt(100, 250)}.${randomInt(0, 255)}.0/24`;
  const cidr6 = `fd${randomInt(16, 255).toString(16)}:${randomInt(1, 0xffff).toString(16)}::/64`;
  const config = join(dirs.dir, "nkitd.yaml");
  const cgroup = createTestCgroup(scope, label);
  const servicesDir = join(dirs.dir, "services.d");
  writeFileSync(
    config,
    [
      "datapath: auto",
      `podCIDRs: [${cidr4}, "${cidr6}"]`,
      `uplinks: [${uplink}]`,
      `paths: {state: ${dirs.stateDir}, run: ${dirs.runDir}, bpffs: ${dirs.bpffsDir}, services: ${servicesDir}, cgroup: ${cgroup}}`,
      "nri: {enabled: false}",
      "log: {level: info}",
      ...extra,
    ].join("\n"),
  );
  return { ...dirs, config, uplink, cidr4, cidr6, cgroup, servicesDir };
}

/** "Another host": a netns on the uplink's far end, both ends addressed on a subnet of their own. */
export interface OutsideNetns {
  netns: { name: string; path: string };
  /** The far end's device, inside netns. */
  dev: string;
  host4: string;
  host6: string;
  far4: string;
  far6: string;
}

/** Moves the veth peer of setup's uplink into a new netns and addresses both ends (v4 /24, v6 /64). */
export async function outsideBehindUplink(
  scope: Scope,
  setup: NkitdSetup,
  label: string,
): Promise<OutsideNetns> {
  const net4 = `10.${randomInt(100, 250)}.${randomInt(0, 255)}`;
  const net6 = `fd${randomInt(16, 255).toString(16)}:${randomInt(1, 0xffff).toString(16)}:1`;
  const o: OutsideNetns = {
    netns: await createNetns(scope, label),
    dev: `${setup.uplink}p`,
    host4: `${net4}.1`,
    host6: `${net6}::1`,
    far4: `${net4}.2`,
    far6: `${net6}::2`,
  };
  const ns = o.netns.name;
  await run("ip", ["link", "set", o.dev, "netns", ns]);
  await run("ip", ["addr", "add", `${o.host4}/24`, "dev", setup.uplink]);
  await run("ip", ["addr", "add", `${o.host6}/64`, "dev", setup.uplink, "nodad"]);
  await run("ip", ["link", "set", setup.uplink, "up"]);
  await run("ip", ["-n", ns, "addr", "add", `${o.far4}/24`, "dev", o.dev]);
  await run("ip", ["-n", ns, "addr", "add", `${o.far6}/64`, "dev", o.dev, "nodad"]);
  await run("ip", ["-n", ns, "link", "set", o.dev, "up"]);
  return o;
}

export interface LogLine {
  msg: string;
  level: number;
  [k: string]: unknown;
}

/** One nkitd process from dist/. */
export class Nkitd {
  private constructor(readonly proc: Proc) {}

  /** Starts nkitd with args; with `netns`, inside that network namespace (nsenter --net). */
  static spawn(scope: Scope, args: readonly string[], netns?: string): Nkitd {
    const proc = netns
      ? spawnProc("nsenter", [`--net=${netns}`, "--", process.execPath, NKITD, ...args], scope)
      : spawnProc(process.execPath, [NKITD, ...args], scope);
    return new Nkitd(proc);
  }

  /** Spawns and waits until it runs (fails with its output when it exits first). */
  static async start(scope: Scope, args: readonly string[], netns?: string): Promise<Nkitd> {
    const d = Nkitd.spawn(scope, args, netns);
    await d.ready();
    return d;
  }

  get pid(): number {
    return this.proc.child.pid ?? 0;
  }

  logs(): LogLine[] {
    const lines: LogLine[] = [];
    for (const l of this.proc.out().split("\n")) {
      if (!l.startsWith("{")) continue;
      try {
        lines.push(JSON.parse(l) as LogLine);
      } catch {
        // a line still being written
      }
    }
    return lines;
  }

  log(msg: string): LogLine | undefined {
    return this.logs().find((l) => l.msg === msg);
  }

  output(): string {
    return `--- nkitd stdout ---\n${this.proc.out()}\n--- nkitd stderr ---\n${this.proc.err()}`;
  }

  async ready(ms = 30_000): Promise<void> {
    try {
      await until(() => this.log("nkitd running") !== undefined, "nkitd to start", ms, this.proc.running);
    } catch (e) {
      throw new Error(`${(e as Error).message}\n${this.output()}`);
    }
  }

  /** Signals nkitd and waits for it; one that has not exited after ms is killed and reported. */
  async stop(signal: NodeJS.Signals = "SIGTERM", ms = 15_000): Promise<ProcExit> {
    if (this.proc.running()) this.proc.child.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const hung = new Promise<"hung">((resolve) => {
      timer = setTimeout(() => resolve("hung"), ms);
    });
    const r = await Promise.race([this.proc.done, hung]);
    clearTimeout(timer);
    if (r !== "hung") return r;
    this.proc.child.kill("SIGKILL");
    await this.proc.done;
    throw new Error(`nkitd did not exit within ${ms} ms of ${signal}\n${this.output()}`);
  }
}

export function nkit(socket: string, ...args: string[]): Promise<ProcExit> {
  return spawnProc(process.execPath, [NKIT, "--socket", socket, ...args]).done;
}

/** One check of `nkit doctor --json` against the nkitd on socket (host checks of no CNI dir), by name. */
export async function doctorCheck(
  socket: string,
  name: string,
): Promise<{ name: string; status: string; detail: string } | undefined> {
  const r = await nkit(socket, "doctor", "--json", "--cni-conf-dir", "/nonexistent-cni");
  const { checks } = JSON.parse(r.stdout) as { checks: { name: string; status: string; detail: string }[] };
  return checks.find((c) => c.name === name);
}

export async function nkitJson<T>(socket: string, ...args: string[]): Promise<T> {
  const r = await nkit(socket, ...args, "--json");
  if (r.code !== 0) throw new Error(`nkit ${args.join(" ")} exited ${String(r.code)}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** `nkit bpf map dump nk_endpoints --json` entries. */
export interface EndpointMapEntry {
  key: { family: number; addr: string };
  value: { ifindex: number; ep_id: number; flags: string[] };
}

/** `nkit bpf map dump nk_devices --json` entries. */
export interface DeviceMapEntry {
  key: { ifindex: number };
  value: { ep_id: number };
}

/** nk_lb_maglev's entries (frontend id → inner map id) as bpftool reads the pinned map. */
export async function maglevEntries(bpffsDir: string): Promise<{ key: number; inner_map_id: number }[]> {
  const r = await run("bpftool", ["-j", "map", "dump", "pinned", join(bpffsDir, "nk_lb_maglev")]);
  return (JSON.parse(r.stdout) as { key: number; inner_map_id: number }[]).map((e) => ({
    key: e.key,
    inner_map_id: e.inner_map_id,
  }));
}

/** Deletes host devices by name if present (cleanup of endpoints a failed test left wired). */
export async function deleteLinks(names: Iterable<string>): Promise<string[]> {
  const deleted: string[] = [];
  for (const n of names) {
    try {
      await run("ip", ["link", "del", n]);
      deleted.push(n);
    } catch {
      // not there
    }
  }
  return deleted;
}

/** Names of the host netns's links among `names`. */
export async function presentLinks(names: Iterable<string>): Promise<Set<string>> {
  const { stdout } = await run("ip", ["-j", "link", "show"]);
  const all = new Set((JSON.parse(stdout) as { ifname: string }[]).map((l) => l.ifname));
  return new Set([...names].filter((n) => all.has(n)));
}

/** Info of the BPF link pinned at path (id, program id, ifindex, attach point). */
export function pinnedLink(path: string): LinkInfo {
  const link = BpfLink.fromPin(path);
  try {
    return link.info();
  } finally {
    link.close();
  }
}

/** What runs on a veth endpoint's host device: the cls_bpf filters on each side of its clsact. */
export async function endpointFilters(ifindex: number): Promise<{ from: TcBpfFilter[]; to: TcBpfFilter[] }> {
  const host = await Rtnl.host();
  try {
    return { from: await host.listTcBpf(ifindex, "ingress"), to: await host.listTcBpf(ifindex, "egress") };
  } finally {
    await host.close();
  }
}

export const NET_FIXTURES = join(ROOT, "test", "fixtures", "net");

/**
 * Starts a server of test/fixtures/net (lb-backend.mjs, peer-echo.mjs, ...) inside a netns and waits
 * until it says "ready"; the scope kills it.
 */
export async function startNetFixture(
  scope: Scope,
  netnsPath: string,
  script: string,
  args: readonly string[],
): Promise<Proc> {
  const proc = spawnProc(
    "nsenter",
    [`--net=${netnsPath}`, "--", process.execPath, join(NET_FIXTURES, script), ...args],
    scope,
  );
  await until(() => proc.out().includes("ready"), `${script} ${args.join(" ")}`, 10_000, proc.running);
  return proc;
}

/** Pods wired through the API with `labels`, each running an lb-backend named after it on `port`. */
export async function wireBackendPods(
  scope: Scope,
  api: NkitClient,
  prefix: string,
  names: readonly string[],
  labels: Record<string, string>,
  port = 8080,
): Promise<{ name: string; ep: Endpoint }[]> {
  const out: { name: string; ep: Endpoint }[] = [];
  for (const name of names) {
    const ns = await createNetns(scope, name);
    const ep = await api.wireEndpoint({ id: `${prefix}-${name}-${process.pid}`, netnsPath: ns.path, labels });
    scope.defer(() => api.unwireEndpoint(ep.id).catch(() => undefined));
    await startNetFixture(scope, ns.path, "lb-backend.mjs", [name, String(port)]);
    out.push({ name, ep });
  }
  return out;
}

/** One `nkit monitor --json` event, as the tests read them. */
export interface MonitorEvent {
  type: string;
  reason: string;
  src: string;
  dst: string;
  family: number;
  protocol: number;
}

/**
 * Subscribes `nkit monitor --json` to `reasons` and resolves once it listens; `events()` waits for
 * `count` events (failing after ms with what the monitor printed).
 */
export async function watchMonitor(
  socket: string,
  reasons: readonly string[],
  count: number,
  ms = 15_000,
): Promise<{ events(): Promise<MonitorEvent[]> }> {
  const mon = spawnProc(process.execPath, [
    NKIT,
    "--socket",
    socket,
    "monitor",
    "--json",
    "--reason",
    reasons.join(","),
    "--count",
    String(count),
  ]);
  await until(() => mon.err().includes("monitoring"), "monitor to subscribe", 10_000, mon.running);
  return {
    events: async () => {
      let timer: NodeJS.Timeout | undefined;
      const exit = await Promise.race([
        mon.done,
        new Promise<never>((_, rej) => {
          timer = setTimeout(() => {
            mon.child.kill();
            rej(new Error(`monitor got: ${mon.out()}${mon.err()}`));
          }, ms);
        }),
      ]).finally(() => clearTimeout(timer));
      if (exit.code !== 0) throw new Error(`nkit monitor exited ${String(exit.code)}: ${exit.stderr}`);
      return exit.stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as MonitorEvent);
    },
  };
}

/** nkitd's routes to other hosts' pods (protocol 188) in a netns, v4 then v6, as `ip route` prints them. */
export async function peerRoutesIn(netns: string): Promise<string[]> {
  const out: string[] = [];
  for (const f of ["-4", "-6"]) {
    const r = await run("ip", ["-n", netns, f, "route", "show", "proto", String(NKIT_ROUTE_PROTOCOL)]);
    out.push(...r.stdout.split("\n").filter((l) => l.trim()));
  }
  return out;
}
