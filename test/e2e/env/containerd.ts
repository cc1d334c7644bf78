// A private containerd per suite: own root, state, sockets (gRPC, ttrpc, NRI), runc root, CNI dirs and
// pod log dir, all under one unique temp dir. Start it with startContainerd(); always call stop() (it is
// safe on a half-started instance, and sweepStaleInstances() in the global setup catches crashed runs).
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { bridgesIn, type Conflist, type ConflistFile } from "./cni.js";
import { type InstancePaths, renderConfig } from "./config.js";
import { type ContainerConfig, CriClient, type PodSandboxConfig } from "./cri.js";
import {
  killAndWait,
  processAlive,
  processesWithArg,
  sh,
  sleep,
  unixSocketListening,
  unmountAll,
  waitFor,
} from "./host.js";
import {
  assertPrepared,
  type Binaries,
  IMAGE_TARBALLS,
  IMAGES,
  type Lane,
  laneFromEnv,
  RUNC,
  SYSTEM_CNI_DIR,
} from "./lanes.js";

export const INSTANCE_PREFIX = "nkit-e2e-";

export interface StartOptions {
  /** Default: NKIT_E2E_CONTAINERD (see lanes.ts), i.e. "1.7". */
  lane?: Lane;
  /** Short label that goes into the temp dir name. */
  name?: string;
  cni?: {
    /** Conflists written into the conf dir before containerd starts. */
    conflists?: ConflistFile[];
    /**
     * Runs after the private bin and conf dirs exist and before containerd starts, to install into
     * them what a user's installer would (e.g. `nkit install --cni-bin-dir ... --cni-conf-dir ...`).
     */
    install?: (paths: InstancePaths) => Promise<void> | void;
    /** Use this conf dir instead of a private one (the test owns its content). */
    confDir?: string;
    /** Use this bin dir instead of a private one (the test owns its content; must hold `loopback`). */
    binDir?: string;
    /** Plugins from /usr/lib/cni linked into the private bin dir (default: loopback, bridge, host-local). */
    systemPlugins?: string[];
    /** Extra plugins for the private bin dir: CNI type -> executable (e.g. {"nkit-cni": ".../nkit-cni"}). */
    plugins?: Record<string, string>;
    /** containerd's max_conf_num (default 1). */
    maxConfNum?: number;
  };
  nri?: {
    /** Default true: NRI on, external plugins may connect to paths.nriSocket. */
    enabled?: boolean;
    /** Default "5s". */
    registrationTimeout?: string;
    /** Default "2s". */
    requestTimeout?: string;
  };
  /** Images imported into k8s.io (default: pause and busybox). The sandbox image is always imported. */
  images?: string[];
  /** Default NKIT_E2E_SNAPSHOTTER or "overlayfs" ("native" works too). */
  snapshotter?: string;
  /** containerd log level (default NKIT_E2E_LOG_LEVEL or "info"). */
  logLevel?: string;
  /** Wait for NetworkReady=true before returning (default: true when a conflist was given). */
  waitNetworkReady?: boolean;
  /** Milliseconds to wait for containerd to come up (default 30 s). */
  startTimeoutMs?: number;
}

export interface RunPodOptions {
  name: string;
  namespace?: string;
  /** Default: a random uid. */
  uid?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  hostname?: string;
  /** Pod network namespace (default) or the host's (namespace_options.network = NODE, no CNI). */
  hostNetwork?: boolean;
  runtimeHandler?: string;
  /** Extra fields merged into linux.securityContext.namespaceOptions, etc. can be set here. */
  linux?: PodSandboxConfig["linux"];
  portMappings?: PodSandboxConfig["portMappings"];
}

export interface Pod {
  id: string;
  name: string;
  config: PodSandboxConfig;
  /** Bind-mounted netns path (under the instance's state dir); null for host-network pods. */
  netnsPath: string | null;
  /** eth0's IP from the CNI result ("" for host-network pods). */
  ip: string;
  additionalIps: string[];
  /** pid of the sandbox (pause) process, when containerd reports it. */
  pid: number | null;
}

export interface ContainerOptions {
  name?: string;
  args?: string[];
  env?: Record<string, string>;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  privileged?: boolean;
  capabilities?: string[];
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

interface OwnerRecord {
  pid: number;
  lane: Lane;
  startedAt: string;
  links: string[];
  networks: string[];
}

export class ContainerdEnv {
  readonly cri: CriClient;
  private child: ChildProcess | undefined;
  private containerdPid: number | undefined;
  private readonly pods = new Map<string, PodSandboxConfig>();
  private readonly cleanups: (() => unknown)[] = [];
  private readonly links = new Set<string>();
  private readonly networks = new Set<string>();
  private exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private stopped = false;
  version = "";

  constructor(
    readonly lane: Lane,
    readonly paths: InstancePaths,
    readonly binaries: Binaries,
  ) {
    this.cri = new CriClient(paths.grpcSocket);
  }

  /** Registers teardown work that runs after all pods are removed and before containerd stops (LIFO). */
  defer(fn: () => unknown): void {
    this.cleanups.push(fn);
  }

  /** Deletes this link at teardown (e.g. a bridge a CNI plugin created). */
  ownLink(name: string): void {
    this.links.add(name);
    this.saveOwner();
  }

  /** The last lines of containerd's log, for error messages. */
  logTail(lines = 40): string {
    try {
      return readFileSync(this.paths.log, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
    } catch {
      return "(no containerd log)";
    }
  }

  get pid(): number | undefined {
    return this.containerdPid;
  }

  /** Writes (not renames: containerd only reloads on a write) a conflist into the conf dir. */
  writeConflist(c: ConflistFile): Conflist {
    const conf = typeof c.config === "function" ? c.config(this.paths) : c.config;
    for (const b of bridgesIn(conf)) this.links.add(b);
    this.networks.add(conf.name);
    this.saveOwner();
    writeFileSync(join(this.paths.cniConfDir, c.file), `${JSON.stringify(conf, null, 2)}\n`);
    return conf;
  }

  saveOwner(): void {
    const rec: OwnerRecord = {
      pid: process.pid,
      lane: this.lane,
      startedAt: new Date().toISOString(),
      links: [...this.links],
      networks: [...this.networks],
    };
    writeFileSync(join(this.paths.dir, "owner.json"), JSON.stringify(rec));
  }

  // -------------------------------------------------------------------------------------- lifecycle
  async start(o: StartOptions): Promise<void> {
    const p = this.paths;
    const env = {
      PATH: `${this.binaries.binDir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
      TMPDIR: join(p.dir, "tmp"),
    };
    mkdirSync(env.TMPDIR, { recursive: true });
    const log = openSync(p.log, "a");
    try {
      // detached = own session, like a service; teardown and the sweeper stop it by pid
      this.child = spawn(this.binaries.containerd, ["--config", p.config], {
        detached: true,
        stdio: ["ignore", log, log],
        env,
      });
    } finally {
      closeSync(log);
    }
    this.child.unref();
    this.containerdPid = this.child.pid;
    if (this.containerdPid !== undefined) writeFileSync(p.pidFile, `${this.containerdPid}\n`);
    this.child.on("exit", (code, signal) => {
      this.exited = { code, signal };
    });
    this.child.on("error", (err) => {
      this.exited = { code: null, signal: null };
      writeFileSync(p.log, `spawn failed: ${err.message}\n`, { flag: "a" });
    });

    const timeout = o.startTimeoutMs ?? 30_000;
    const alive = (): void => {
      if (this.exited) {
        throw new Error(
          `containerd exited during start (${JSON.stringify(this.exited)}):\n${this.logTail()}`,
        );
      }
    };
    const v = await waitFor(
      "the CRI to answer Version",
      async () => {
        alive();
        return await this.cri.version({ timeoutMs: 1_000 });
      },
      timeout,
    ).catch((e: unknown) => {
      throw new Error(`${(e as Error).message}\n--- containerd log ---\n${this.logTail()}`, { cause: e });
    });
    this.version = v.runtimeVersion;
    if (o.nri?.enabled ?? true) {
      await waitFor(
        "the NRI socket to listen",
        () => {
          alive();
          return unixSocketListening(p.nriSocket) || undefined;
        },
        10_000,
      );
    }

    const images = new Set([IMAGES.pause, ...(o.images ?? [IMAGES.pause, IMAGES.busybox])]);
    for (const ref of images) await this.importImage(ref);

    const hasConf = readdirSync(p.cniConfDir).some((f) => /\.(conflist|conf|json)$/.test(f));
    await this.waitReady(o.waitNetworkReady ?? hasConf);
  }

  /** Imports an image tarball into the CRI namespace (a ref from IMAGES or a path to an OCI tar). */
  async importImage(refOrPath: string): Promise<void> {
    const file = IMAGE_TARBALLS[refOrPath] ?? refOrPath;
    if (!existsSync(file)) throw new Error(`no image tarball for ${refOrPath}: run scripts/e2e/setup.sh`);
    await sh(
      this.binaries.ctr,
      ["--address", this.paths.grpcSocket, "-n", "k8s.io", "images", "import", file],
      120_000,
    );
  }

  /** Waits for RuntimeReady (and NetworkReady unless network=false). */
  async waitReady(network = true, timeoutMs = 20_000): Promise<void> {
    let last = "";
    await waitFor(
      network ? "RuntimeReady and NetworkReady" : "RuntimeReady",
      async () => {
        const s = await this.cri.status(false, { timeoutMs: 2_000 });
        const conds = s.status?.conditions ?? [];
        last = conds
          .map((c) => `${c.type}=${c.status}${c.reason ? `(${c.reason}: ${c.message})` : ""}`)
          .join(" ");
        const ok = (t: string): boolean => conds.some((c) => c.type === t && c.status);
        return ok("RuntimeReady") && (!network || ok("NetworkReady")) ? true : undefined;
      },
      timeoutMs,
      100,
    ).catch((e: unknown) => {
      throw new Error(`${(e as Error).message}; last status: ${last}\n${this.logTail()}`, { cause: e });
    });
  }

  // ------------------------------------------------------------------------------------------- pods
  async runPod(o: RunPodOptions): Promise<Pod> {
    const logDirectory = join(this.paths.podLogDir, `${o.name}-${randomBytes(3).toString("hex")}`);
    mkdirSync(logDirectory, { recursive: true });
    const config: PodSandboxConfig = {
      metadata: {
        name: o.name,
        uid: o.uid ?? randomBytes(8).toString("hex"),
        namespace: o.namespace ?? "default",
        attempt: 0,
      },
      hostname: o.hostname ?? o.name,
      logDirectory,
      labels: o.labels ?? {},
      annotations: o.annotations ?? {},
      ...(o.portMappings ? { portMappings: o.portMappings } : {}),
      linux: {
        ...o.linux,
        securityContext: {
          ...o.linux?.securityContext,
          namespaceOptions: {
            network: o.hostNetwork ? "NODE" : "POD",
            pid: "POD",
            ipc: "POD",
            ...o.linux?.securityContext?.namespaceOptions,
          },
        },
      },
    };
    const id = await this.cri.runPodSandbox(config, o.runtimeHandler ?? "");
    this.pods.set(id, config);
    return { id, name: o.name, config, ...(await this.podNetwork(id)) };
  }

  /** netns path, IPs and pause pid of a pod (from the verbose PodSandboxStatus). */
  async podNetwork(podId: string): Promise<Omit<Pod, "id" | "name" | "config">> {
    const r = await this.cri.podSandboxStatus(podId, true);
    let netnsPath: string | null = null;
    let pid: number | null = null;
    const raw = r.info.info;
    if (raw) {
      const info = JSON.parse(raw) as {
        pid?: number;
        runtimeSpec?: { linux?: { namespaces?: { type: string; path?: string }[] } };
      };
      pid = typeof info.pid === "number" && info.pid > 0 ? info.pid : null;
      const ns = info.runtimeSpec?.linux?.namespaces?.find((n) => n.type === "network");
      netnsPath = ns?.path ? ns.path : null;
    }
    return {
      netnsPath,
      pid,
      ip: r.status?.network?.ip ?? "",
      additionalIps: (r.status?.network?.additionalIps ?? []).map((x) => x.ip),
    };
  }

  async createContainer(
    pod: Pod | string,
    image: string,
    command: string[],
    o: ContainerOptions = {},
  ): Promise<string> {
    const podId = typeof pod === "string" ? pod : pod.id;
    const sandboxConfig = typeof pod === "string" ? this.pods.get(pod) : pod.config;
    if (!sandboxConfig) throw new Error(`pod ${podId} was not started through this harness`);
    const name = o.name ?? `c-${randomBytes(3).toString("hex")}`;
    const config: ContainerConfig = {
      metadata: { name, attempt: 0 },
      image: { image },
      command,
      args: o.args ?? [],
      envs: Object.entries(o.env ?? {}).map(([key, value]) => ({ key, value })),
      labels: o.labels ?? {},
      annotations: o.annotations ?? {},
      logPath: `${name}.log`,
      linux: {
        securityContext: {
          privileged: o.privileged ?? false,
          ...(o.capabilities ? { capabilities: { addCapabilities: o.capabilities } } : {}),
        },
      },
    };
    return await this.cri.createContainer(podId, config, sandboxConfig);
  }

  async createAndStartContainer(
    pod: Pod | string,
    image: string,
    command: string[],
    o: ContainerOptions = {},
  ): Promise<string> {
    const id = await this.createContainer(pod, image, command, o);
    await this.cri.startContainer(id);
    return id;
  }

  async execSync(containerId: string, cmd: string[], timeoutSec = 10): Promise<ExecResult> {
    const r = await this.cri.execSync(containerId, cmd, timeoutSec);
    return { stdout: r.stdout.toString("utf8"), stderr: r.stderr.toString("utf8"), exitCode: r.exitCode };
  }

  /** The container's output from its CRI log file, without the CRI timestamp/stream prefixes. */
  async containerLog(containerId: string): Promise<string> {
    const s = await this.cri.containerStatus(containerId);
    const path = s.status?.logPath;
    if (!path || !existsSync(path)) return "";
    return readFileSync(path, "utf8")
      .split("\n")
      .filter((l) => l.length > 0)
      .map((l) => l.replace(/^\S+ (stdout|stderr) [FP] /, ""))
      .join("\n");
  }

  async stopPod(podId: string): Promise<void> {
    await this.cri.stopPodSandbox(podId);
  }

  async removePod(podId: string): Promise<void> {
    await this.cri.removePodSandbox(podId);
    this.pods.delete(podId);
  }

  /** Stop + remove every pod containerd knows (not only ours: the instance is private). */
  async removeAllPods(): Promise<Error[]> {
    const errors: Error[] = [];
    let pods: { id: string }[] = [];
    try {
      pods = await this.cri.listPodSandbox({}, { timeoutMs: 10_000 });
    } catch (e) {
      errors.push(e as Error);
    }
    for (const { id } of pods) {
      try {
        await this.cri.stopPodSandbox(id, { timeoutMs: 30_000 });
      } catch (e) {
        errors.push(e as Error);
      }
      try {
        await this.cri.removePodSandbox(id, { timeoutMs: 30_000 });
      } catch (e) {
        errors.push(e as Error);
      }
    }
    this.pods.clear();
    return errors;
  }

  // ------------------------------------------------------------------------------------------- stop
  /**
   * Teardown, in the order that leaves nothing behind: pods first (shims and pods outlive containerd),
   * then the test's deferred cleanups, then containerd, then whatever survived (runc containers, shims,
   * mounts), links, and the temp dir. Collects every error and throws them together at the end.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const errors: unknown[] = [];
    const running = this.containerdPid !== undefined && processAlive(this.containerdPid) && !this.exited;
    if (running) errors.push(...(await this.removeAllPods()));
    while (this.cleanups.length > 0) {
      const fn = this.cleanups.pop()!;
      try {
        await fn();
      } catch (e) {
        errors.push(e);
      }
    }
    this.cri.close();
    if (this.containerdPid !== undefined) await killAndWait(this.containerdPid, 15_000);
    try {
      await reapLeftovers(this.paths, [...this.links], [...this.networks]);
    } catch (e) {
      errors.push(e);
    }
    if (process.env.NKIT_E2E_KEEP === "1") {
      // keep the directory (logs, config) for a post-mortem; the mounts and processes are gone already
      writeFileSync(join(this.paths.dir, "owner.json"), JSON.stringify({ pid: 0, kept: true }));
    } else {
      rmSync(this.paths.dir, { recursive: true, force: true });
    }
    if (errors.length > 0)
      throw new AggregateError(errors, `containerd e2e teardown (${this.paths.dir}) had errors`);
  }
}

/**
 * Removes what a (possibly crashed) instance left: runc containers in its runc root, shims bound to its
 * socket, mounts under its dir (netns bind mounts, rootfs overlays), its links and libcni cache entries.
 */
async function reapLeftovers(p: InstancePaths, links: string[], networks: string[]): Promise<void> {
  const containerIds: string[] = [];
  if (existsSync(p.runcRoot)) {
    for (const ns of readdirSync(p.runcRoot)) {
      const root = join(p.runcRoot, ns);
      let ids: string[] = [];
      try {
        const out = await sh(RUNC, ["--root", root, "list", "--format", "json"]);
        ids = ((JSON.parse(out || "null") as { id: string }[] | null) ?? []).map((c) => c.id);
      } catch {
        ids = [];
      }
      containerIds.push(...ids);
      for (const id of ids) {
        await sh(RUNC, ["--root", root, "delete", "--force", id]).catch(() => undefined);
      }
    }
  }
  for (const pid of processesWithArg("-address", p.grpcSocket)) await killAndWait(pid, 5_000);
  await unmountAll(p.dir);
  for (const l of links) {
    if (existsSync(`/sys/class/net/${l}`)) await sh("ip", ["link", "del", l]).catch(() => undefined);
  }
  const cache = "/var/lib/cni/results";
  if (existsSync(cache)) {
    // entries of our networks, and containerd's own "cni-loopback" entries of sandboxes that never saw CNI DEL
    for (const f of readdirSync(cache)) {
      if (networks.some((n) => f.startsWith(`${n}-`)) || containerIds.some((id) => f.includes(`-${id}-`))) {
        rmSync(join(cache, f), { force: true });
      }
    }
  }
}

function instancePaths(dir: string, o: StartOptions): InstancePaths {
  return {
    dir,
    config: join(dir, "config.toml"),
    root: join(dir, "root"),
    state: join(dir, "state"),
    grpcSocket: join(dir, "containerd.sock"),
    ttrpcSocket: join(dir, "containerd.sock.ttrpc"),
    nriSocket: join(dir, "nri.sock"),
    nriPluginDir: join(dir, "nri", "plugins"),
    nriPluginConfigDir: join(dir, "nri", "conf.d"),
    runcRoot: join(dir, "state", "runc"),
    cniBinDir: o.cni?.binDir ?? join(dir, "cni", "bin"),
    cniConfDir: o.cni?.confDir ?? join(dir, "cni", "net.d"),
    cniDataDir: join(dir, "cni", "data"),
    podLogDir: join(dir, "pods"),
    log: join(dir, "containerd.log"),
    pidFile: join(dir, "containerd.pid"),
    optDir: join(dir, "opt"),
  };
}

/** Starts a private containerd; on failure everything it made is removed again before the error is thrown. */
export async function startContainerd(o: StartOptions = {}): Promise<ContainerdEnv> {
  if (process.getuid?.() !== 0) throw new Error("the e2e harness needs root");
  const lane = o.lane ?? laneFromEnv();
  const binaries = assertPrepared(lane);
  const label = (o.name ?? "suite").replace(/[^a-zA-Z0-9_.-]/g, "-").slice(0, 20);
  const dir = mkdtempSync(join(tmpdir(), `${INSTANCE_PREFIX}${lane}-${label}-`));
  const paths = instancePaths(dir, o);
  const env = new ContainerdEnv(lane, paths, binaries);
  try {
    env.saveOwner();
    for (const d of [
      paths.root,
      paths.state,
      paths.nriPluginDir,
      paths.nriPluginConfigDir,
      paths.cniDataDir,
      paths.podLogDir,
      paths.optDir,
    ]) {
      mkdirSync(d, { recursive: true });
    }
    if (!o.cni?.binDir) {
      mkdirSync(paths.cniBinDir, { recursive: true });
      for (const name of o.cni?.systemPlugins ?? ["loopback", "bridge", "host-local"]) {
        symlinkSync(join(SYSTEM_CNI_DIR, name), join(paths.cniBinDir, name));
      }
      for (const [name, target] of Object.entries(o.cni?.plugins ?? {})) {
        symlinkSync(target, join(paths.cniBinDir, name));
      }
    }
    mkdirSync(paths.cniConfDir, { recursive: true });
    for (const c of o.cni?.conflists ?? []) env.writeConflist(c);
    await o.cni?.install?.(paths);
    writeFileSync(
      paths.config,
      renderConfig({
        lane,
        paths,
        sandboxImage: IMAGES.pause,
        runc: RUNC,
        snapshotter: o.snapshotter ?? process.env.NKIT_E2E_SNAPSHOTTER ?? "overlayfs",
        logLevel: o.logLevel ?? process.env.NKIT_E2E_LOG_LEVEL ?? "info",
        nri: {
          enabled: o.nri?.enabled ?? true,
          registrationTimeout: o.nri?.registrationTimeout ?? "5s",
          requestTimeout: o.nri?.requestTimeout ?? "2s",
        },
        cniMaxConfNum: o.cni?.maxConfNum ?? 1,
      }),
    );
    await env.start(o);
    return env;
  } catch (e) {
    const log = env.logTail(60);
    await env.stop().catch(() => undefined);
    if (e instanceof Error && !e.message.includes("containerd log")) {
      e.message += `\n--- containerd log (${basename(dir)}) ---\n${log}`;
    }
    throw e;
  }
}

/**
 * Cleans up instances whose owning test process is gone (a crashed or killed run): stops their containerd
 * (by the pid they recorded, after checking its command line), then reaps pods, shims, mounts and links.
 */
export async function sweepStaleInstances(): Promise<string[]> {
  const swept: string[] = [];
  const base = tmpdir();
  for (const ent of readdirSync(base)) {
    if (!ent.startsWith(INSTANCE_PREFIX)) continue;
    const dir = join(base, ent);
    let owner: Partial<OwnerRecord> & { kept?: boolean };
    try {
      owner = JSON.parse(readFileSync(join(dir, "owner.json"), "utf8")) as Partial<OwnerRecord>;
    } catch {
      continue; // not ours, or being created right now
    }
    if (owner.kept || (owner.pid && processAlive(owner.pid))) continue;
    const paths = instancePaths(dir, {});
    try {
      const pid = Number(readFileSync(paths.pidFile, "utf8").trim());
      const argv = processAlive(pid) ? readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0") : [];
      if (argv.includes(paths.config)) {
        await killAndWait(pid, 15_000);
      }
    } catch {
      // no pid file: containerd never started
    }
    await sleep(100);
    await reapLeftovers(paths, owner.links ?? [], owner.networks ?? []);
    rmSync(dir, { recursive: true, force: true });
    swept.push(dir);
  }
  return swept;
}
