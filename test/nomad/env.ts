// The real-Nomad lane: a Nomad v1.6.5 agent (server + client, loopback only, exec driver) built into a
// cache outside the repository (NKIT_NOMAD_BIN, default /var/cache/nkit/nomad/bin/nomad), whose
// cni_path and cni_config_dir hold exactly what `nkit install` writes, next to a private nkitd. All of
// it (jobs, allocation dirs and their mounts, netns, devices, pins, processes) goes with the scope.
import { type ChildProcess, spawn } from "node:child_process";
import { randomInt } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NkitClient } from "../../src/api/client.js";
import { RUN_ID } from "../helpers/names.js";
import { NKIT, Nkitd, type NkitdSetup, nkitdSetup } from "../helpers/nkitd.js";
import type { Scope } from "../helpers/scope.js";
import { run } from "../helpers/sys.js";

export const NOMAD_BIN = process.env.NKIT_NOMAD_BIN ?? "/var/cache/nkit/nomad/bin/nomad";

/** Why the lane cannot run here, or undefined when it can. */
export function nomadUnavailable(): string | undefined {
  if (!existsSync(NOMAD_BIN)) {
    return `no Nomad binary at ${NOMAD_BIN} (build Nomad v1.6.5 from a snapshot of its repository as the developers' reference says, or set NKIT_NOMAD_BIN)`;
  }
  if (process.getuid?.() !== 0) return "the Nomad lane needs root";
  return undefined;
}

/** The CNI dirs Nomad's client reads, filled by `nkit install` (nkit-cni, loopback, the conflist). */
export async function installCni(
  scope: Scope,
  o: { socket: string; network?: string },
): Promise<{ binDir: string; confDir: string }> {
  const root = mkdtempSync(join(tmpdir(), `nkt-${RUN_ID}-nomad-cni-`));
  scope.defer(() => rmSync(root, { recursive: true, force: true }));
  const binDir = join(root, "bin");
  const confDir = join(root, "net.d");
  // Empty: `nkit install` provides nkit-cni and (from Debian's plugins) loopback, as for a user.
  mkdirSync(binDir);
  await run(process.execPath, [
    NKIT,
    "--json",
    "install",
    "--systemd-dir",
    join(root, "systemd"),
    "--tmpfiles-dir",
    join(root, "tmpfiles.d"),
    "--config",
    join(root, "nkitd.yaml"),
    "--manifest",
    join(root, "manifest.json"),
    "--containerd-config",
    join(root, "absent-containerd.toml"),
    "--cni-bin-dir",
    binDir,
    "--cni-conf-dir",
    confDir,
    "--cni-socket",
    o.socket,
    "--cni-network",
    o.network ?? "nkit",
  ]);
  return { binDir, confDir };
}

/** A lane: a private nkitd told of the agent's API, the CNI dirs `nkit install` filled, the agent. */
export interface NomadLane {
  setup: NkitdSetup;
  nkitd: Nkitd;
  api: NkitClient;
  nomad: NomadAgent;
}

/**
 * Starts a lane; `beforeNkitd` runs once the setup exists and before nkitd starts (e.g. an
 * "outside" netns on the uplink, whose address nkitd must see as the host's).
 */
export async function startNomadLane(
  scope: Scope,
  label: string,
  o: { beforeNkitd?: (setup: NkitdSetup) => Promise<void> } = {},
): Promise<NomadLane> {
  const nomadPort = nomadPortBase();
  const setup = await nkitdSetup(scope, label, [`nomad: {address: "http://127.0.0.1:${nomadPort}"}`]);
  await o.beforeNkitd?.(setup);
  const cni = await installCni(scope, { socket: `${setup.runDir}/cni.sock` });
  const nkitd = await Nkitd.start(scope, ["--config", setup.config]);
  const api = new NkitClient(setup.socket);
  scope.defer(() => api.close());
  const nomad = await NomadAgent.start(scope, cni, nomadPort);
  return { setup, nkitd, api, nomad };
}

/**
 * The agent's http port (rpc and serf follow it, the benchmark's static ports take the next ~100):
 * chosen before it starts, so nkitd can be told. Below Linux's ephemeral range (32768+), where the
 * lane's own connections would otherwise now and then hold one ("bind: address already in use").
 */
export const nomadPortBase = (): number => randomInt(20000, 32500);

/**
 * An HCL group of busybox httpd allocations on `cni/nkit` serving /tmp/www on 8080 (index.html holds
 * the allocation's id), optionally pinned to a node and registering a Nomad service (with an HTTP
 * check of /health when `check`, which then exists).
 */
export function httpdGroup(o: {
  name: string;
  count?: number;
  node?: string;
  service?: string;
  check?: boolean;
  /** More shell run before httpd starts, e.g. "/bin/busybox mkdir -p /tmp/www/cgi-bin". */
  prepare?: string;
}): string {
  const check = `
      check {
        type         = "http"
        path         = "/health"
        interval     = "1s"
        timeout      = "1s"
        address_mode = "alloc"
      }`;
  const steps = [
    "/bin/busybox mkdir -p /tmp/www",
    "echo $NOMAD_ALLOC_ID > /tmp/www/index.html",
    ...(o.check ? ["echo ok > /tmp/www/health"] : []),
    ...(o.prepare ? [o.prepare] : []),
    "exec /bin/busybox httpd -f -p 8080 -h /tmp/www",
  ];
  return `  group "${o.name}" {
    count = ${o.count ?? 1}
${
  o.node
    ? `    constraint {
      attribute = "\${node.unique.name}"
      value     = "${o.node}"
    }
`
    : ""
}    network {
      mode = "cni/nkit"
      port "http" { to = 8080 }
    }
${
  o.service
    ? `    service {
      provider     = "nomad"
      name         = "${o.service}"
      port         = "http"
      address_mode = "alloc"${o.check ? check : ""}
    }
`
    : ""
}    task "httpd" {
      driver = "exec"
      kill_timeout = "1s"
      config {
        command = "/bin/busybox"
        args = ["sh", "-c", "${steps.join(" && ")}"]
      }
      resources {
        cpu    = 50
        memory = 32
      }
    }
  }`;
}

export interface NomadAlloc {
  ID: string;
  ClientStatus: string;
  JobID: string;
  TaskGroup: string;
  AllocatedResources?: {
    Shared?: { Ports?: { Label: string; Value: number; To: number; HostIP: string }[] };
  };
}

/** An agent other than the lane's loopback server + client: a server or a client of a cluster. */
export interface AgentOptions {
  /** The address it binds and advertises (default 127.0.0.1). */
  bind?: string;
  /** "both" (default): server and client; "server"; "client" (joins `servers`). */
  role?: "both" | "server" | "client";
  /** host:rpc-port of the servers a client joins. */
  servers?: string[];
  /** Run inside this network namespace (path). */
  netns?: string;
  /** The client's node name. */
  name?: string;
  /** The client's network interface (host ports, fingerprint); default lo. */
  networkInterface?: string;
  /** Where the client puts its allocations' cgroups (default Nomad's own, /nomad). */
  cgroupParent?: string;
}

export class NomadAgent {
  private constructor(
    readonly dataDir: string,
    readonly http: string,
    public process: ChildProcess,
    private readonly logFile: string,
    private readonly configFile: string,
    private readonly opts: AgentOptions,
  ) {}

  /** Every allocation this agent ran for the tests: teardown waits for each one's network to go. */
  private readonly seen = new Set<string>();

  /** Network namespaces that existed when the agent started: none of them is its to remove. */
  private readonly netnsBefore = new Set(namedNetns());

  private static spawnAgent(configFile: string, logFile: string, netns?: string): ChildProcess {
    const argv = ["agent", "-config", configFile];
    const [cmd, args] = netns ? ["nsenter", [`--net=${netns}`, "--", NOMAD_BIN, ...argv]] : [NOMAD_BIN, argv];
    const child = spawn(cmd, args, {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" },
    });
    const log = (d: Buffer) => writeFileSync(logFile, d, { flag: "a" });
    child.stdout?.on("data", log);
    child.stderr?.on("data", log);
    return child;
  }

  /** Stops the agent (SIGINT: the client leaves its allocations running) and waits for it. */
  async stopAgent(): Promise<void> {
    const child = this.process;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    child.kill("SIGINT");
    const t = setTimeout(() => child.kill("SIGKILL"), 20_000);
    await exited;
    clearTimeout(t);
  }

  /** Restarts the agent on the same data dir (the client restores its allocations) and waits for the node. */
  async restartAgent(): Promise<void> {
    await this.stopAgent();
    await this.startAgain();
  }

  /**
   * Starts a stopped agent again on its data dir and waits for the node. A server's RPC port can
   * stay taken for a moment by the connections its clients held (closing): it tries again then.
   */
  async startAgain(): Promise<void> {
    const deadline = Date.now() + 60_000;
    for (;;) {
      this.process = NomadAgent.spawnAgent(this.configFile, this.logFile, this.opts.netns);
      try {
        await this.nodeReady();
        return;
      } catch (e) {
        const busy = /bind: address already in use/.test(this.logTail(5));
        if (!busy || Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  /** Ready: a server has a leader, a client's node (or any node of a "both" agent) is ready. */
  private async nodeReady(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.process.exitCode !== null) throw new Error(`nomad agent exited:\n${this.logTail()}`);
      if (this.opts.role === "server") {
        if (await this.get<string>("/v1/status/leader").catch(() => "")) return;
      } else {
        const nodes = await this.get<{ Name: string; Status: string }[]>("/v1/nodes").catch(() => []);
        const mine = nodes.filter((n) => this.opts.name === undefined || n.Name === this.opts.name);
        if (mine.some((n) => n.Status === "ready")) return;
      }
      if (Date.now() > deadline) throw new Error(`the Nomad node never became ready:\n${this.logTail()}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /**
   * Starts an agent, by default a loopback-only server + client, and waits until it is ready.
   * The rpc and serf ports follow `base`.
   */
  static async start(
    scope: Scope,
    cni: { binDir: string; confDir: string } | undefined,
    base = nomadPortBase(),
    o: AgentOptions = {},
  ): Promise<NomadAgent> {
    const dataDir = mkdtempSync(join(tmpdir(), `nkt-${RUN_ID}-nomad-`));
    const ports = { http: base, rpc: base + 1, serf: base + 2 };
    const bind = o.bind ?? "127.0.0.1";
    const role = o.role ?? "both";
    const config = join(dataDir, "agent.hcl");
    const server =
      role === "client" ? "server { enabled = false }" : "server { enabled = true  bootstrap_expect = 1 }";
    const client =
      role === "server" || !cni
        ? "client { enabled = false }"
        : `client {
  enabled = true
${o.servers ? `  servers = [${o.servers.map((x) => `"${x}"`).join(", ")}]\n` : ""}${o.cgroupParent ? `  cgroup_parent = "${o.cgroupParent}"\n` : ""}  network_interface = "${o.networkInterface ?? "lo"}"
  cni_path = "${cni.binDir}"
  cni_config_dir = "${cni.confDir}"
  # The exec driver's chroot: only the static busybox the jobs run (the default links in all of /usr,
  # seconds per allocation).
  chroot_env {
    "/bin/busybox" = "/bin/busybox"
    "/etc/passwd"  = "/etc/passwd"
    "/etc/group"   = "/etc/group"
  }
  options { "fingerprint.denylist" = "env_aws,env_gce,env_azure,env_digitalocean" }
}`;
    writeFileSync(
      config,
      `bind_addr = "${bind}"
${o.name ? `name = "${o.name}"\n` : ""}disable_update_check = true
data_dir = "${join(dataDir, "data")}"
ports { http = ${ports.http}  rpc = ${ports.rpc}  serf = ${ports.serf} }
advertise { http = "${bind}"  rpc = "${bind}"  serf = "${bind}" }
${server}
${client}
`,
    );
    const logFile = join(dataDir, "agent.log");
    // The client makes a cgroup (/nomad, or its cgroup_parent) in every hierarchy and leaves it:
    // ours goes with the lane.
    const cgroupName = (o.cgroupParent ?? "nomad").replace(/^\//, "");
    const ownCgroups = !existsSync(`/sys/fs/cgroup/cpuset/${cgroupName}`);
    const agent = new NomadAgent(
      dataDir,
      `http://${bind}:${ports.http}`,
      NomadAgent.spawnAgent(config, logFile, o.netns),
      logFile,
      config,
      o,
    );
    // Registered before anything can fail: jobs purged (their DELs reach nkitd while it still
    // runs: the scope unwinds in reverse), the agent stopped, what it mounted unmounted, its dir gone.
    scope.defer(async () => {
      await agent.purgeAll().catch(() => undefined);
      await agent.stopAgent();
      killStrays();
      await agent.removeNetnsLeft();
      if (ownCgroups && role !== "server")
        for (const h of readdirSync("/sys/fs/cgroup")) removeCgroup(join("/sys/fs/cgroup", h, cgroupName));
      await unmountUnder(dataDir);
      rmSync(dataDir, { recursive: true, force: true });
    });
    await agent.nodeReady();
    return agent;
  }

  logTail(lines = 40): string {
    return existsSync(this.logFile)
      ? readFileSync(this.logFile, "utf8").split("\n").slice(-lines).join("\n")
      : "";
  }

  async get<T>(path: string): Promise<T> {
    const res = await fetch(`${this.http}${path}`);
    if (!res.ok) throw new Error(`GET ${path}: HTTP ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  }

  private async send(method: string, path: string, body?: unknown): Promise<unknown> {
    const res = await fetch(`${this.http}${path}`, {
      method,
      ...(body === undefined
        ? {}
        : { body: JSON.stringify(body), headers: { "content-type": "application/json" } }),
    });
    if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status} ${await res.text()}`);
    return res.json();
  }

  /** Submits an HCL job (parsed by the agent) and returns its id. */
  async runJob(hcl: string): Promise<string> {
    const job = await this.parseJob(hcl);
    await this.registerJob(job);
    return job.ID;
  }

  /** The agent's JSON form of an HCL job (what registerJob submits). */
  async parseJob(hcl: string): Promise<{ ID: string }> {
    return (await this.send("POST", "/v1/jobs/parse", { JobHCL: hcl, Canonicalize: true })) as { ID: string };
  }

  async registerJob(job: { ID: string }): Promise<void> {
    await this.send("POST", "/v1/jobs", { Job: job });
  }

  async stopJob(id: string, purge = true): Promise<void> {
    await this.send("DELETE", `/v1/job/${encodeURIComponent(id)}${purge ? "?purge=true" : ""}`);
  }

  async allocations(jobId: string): Promise<NomadAlloc[]> {
    const allocs = await this.get<NomadAlloc[]>(`/v1/job/${encodeURIComponent(jobId)}/allocations`);
    for (const a of allocs) this.seen.add(a.ID);
    return allocs;
  }

  async allocation(id: string): Promise<NomadAlloc> {
    return this.get<NomadAlloc>(`/v1/allocation/${id}`);
  }

  /** Waits until the job has `count` running allocations and returns them. */
  async running(jobId: string, count = 1, timeoutMs = 90_000): Promise<NomadAlloc[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const all = await this.allocations(jobId);
      const allocs = all.filter((a) => a.ClientStatus === "running");
      if (allocs.length >= count) return Promise.all(allocs.map((a) => this.allocation(a.ID)));
      if (Date.now() > deadline) {
        throw new Error(
          `job ${jobId}: ${allocs.length}/${count} allocations running after ${timeoutMs} ms:\n${this.logTail()}`,
        );
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /**
   * Removes the netns of allocations Nomad failed to delete (it cannot unmount one still in use),
   * also of those the tests never listed (replaced or rescheduled ones): Nomad names an
   * allocation's netns by its id, so an id-shaped one made since the agent started that no process
   * is in any more is its.
   */
  async removeNetnsLeft(): Promise<void> {
    const inUse = netnsInUse();
    const made = namedNetns().filter(
      (n) => ALLOC_ID.test(n) && !this.netnsBefore.has(n) && !inUse.has(netnsInode(`/var/run/netns/${n}`)),
    );
    for (const id of new Set([...this.seen, ...made]))
      if (existsSync(`/var/run/netns/${id}`)) await run("ip", ["netns", "del", id]).catch(() => undefined);
  }

  /**
   * Stops every job and waits until each allocation's network is torn down too (Nomad deletes its
   * netns after the CNI DEL), which comes after the allocation stops: an agent stopped earlier leaves it.
   */
  async purgeAll(): Promise<void> {
    const jobs = await this.get<{ ID: string }[]>("/v1/jobs");
    await Promise.all(jobs.map((j) => this.allocations(j.ID).catch(() => [])));
    for (const j of jobs) await this.stopJob(j.ID);
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      if ([...this.seen].every((id) => !existsSync(`/var/run/netns/${id}`))) return;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/** What Nomad names an allocation (and its network namespace): a UUID. */
const ALLOC_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The names under /var/run/netns. */
function namedNetns(): string[] {
  return existsSync("/var/run/netns") ? readdirSync("/var/run/netns") : [];
}

/** The inode of a network namespace file (0 when gone). */
function netnsInode(path: string): number {
  try {
    return statSync(path).ino;
  } catch {
    return 0;
  }
}

/** The network namespaces some process is in, by inode. */
function netnsInUse(): Set<number> {
  const out = new Set<number>();
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d)))
    out.add(netnsInode(`/proc/${pid}/ns/net`));
  return out;
}

/** Removes a cgroup dir and its (empty) children, deepest first; one still in use stays. */
function removeCgroup(dir: string): void {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir, { withFileTypes: true }))
    if (e.isDirectory()) removeCgroup(join(dir, e.name));
  try {
    rmdirSync(dir);
  } catch {
    // still holds a process
  }
}

/** Nomad's helper processes (executors, logmon) that outlive the agent: this lane's binary only. */
function killStrays(): void {
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      if (readlinkSync(`/proc/${pid}/exe`) === NOMAD_BIN) process.kill(Number(pid), "SIGKILL");
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
}

/** Unmounts everything mounted below dir (deepest first): the exec driver's allocation chroots. */
async function unmountUnder(dir: string): Promise<void> {
  const mounts = readFileSync("/proc/mounts", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[1]?.replace(/\\040/g, " "))
    .filter((m): m is string => m !== undefined && (m === dir || m.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) await run("umount", ["-l", m]).catch(() => undefined);
}
