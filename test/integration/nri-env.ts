// A private containerd 1.7 with NRI enabled, for the NRI integration tests: its own root, state,
// sockets and runc root under a unique /tmp directory, a stub CNI plugin that reports one IP for eth0
// and creates nothing, and a locally built pause image (no registry). Plus a minimal CRI client
// (grpc-js + a small protobufjs-parsed subset of runtime.v1).
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import net from "node:net";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import protobuf from "protobufjs";

const CRI_PROTO = `
syntax = "proto3";
package runtime.v1;
enum NamespaceMode { POD = 0; CONTAINER = 1; NODE = 2; TARGET = 3; }
message NamespaceOption { NamespaceMode network = 1; NamespaceMode pid = 2; NamespaceMode ipc = 3; }
message LinuxSandboxSecurityContext { NamespaceOption namespace_options = 1; }
message LinuxPodSandboxConfig { string cgroup_parent = 1; LinuxSandboxSecurityContext security_context = 2; }
message PodSandboxMetadata { string name = 1; string uid = 2; string namespace = 3; uint32 attempt = 4; }
message PodSandboxConfig {
  PodSandboxMetadata metadata = 1; string hostname = 2; string log_directory = 3;
  map<string, string> labels = 6; map<string, string> annotations = 7; LinuxPodSandboxConfig linux = 8;
}
message RunPodSandboxRequest { PodSandboxConfig config = 1; string runtime_handler = 2; }
message RunPodSandboxResponse { string pod_sandbox_id = 1; }
message StopPodSandboxRequest { string pod_sandbox_id = 1; }
message StopPodSandboxResponse {}
message RemovePodSandboxRequest { string pod_sandbox_id = 1; }
message RemovePodSandboxResponse {}
message PodSandboxStatusRequest { string pod_sandbox_id = 1; bool verbose = 2; }
message PodIP { string ip = 1; }
message PodSandboxNetworkStatus { string ip = 1; }
message PodSandboxStatus { string id = 1; PodSandboxMetadata metadata = 2; int32 state = 3; PodSandboxNetworkStatus network = 5; }
message PodSandboxStatusResponse { PodSandboxStatus status = 1; map<string, string> info = 2; }
message PodSandbox { string id = 1; PodSandboxMetadata metadata = 2; int32 state = 3; }
message ListPodSandboxRequest {}
message ListPodSandboxResponse { repeated PodSandbox items = 1; }
message StatusRequest { bool verbose = 1; }
message RuntimeCondition { string type = 1; bool status = 2; string reason = 3; string message = 4; }
message RuntimeStatus { repeated RuntimeCondition conditions = 1; }
message StatusResponse { RuntimeStatus status = 1; }
`;

const criRoot = protobuf.parse(CRI_PROTO, { keepCase: true }).root;

export interface PodConfig {
  name: string;
  uid: string;
  namespace: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export class CriClient {
  private readonly client: grpc.Client;

  constructor(socket: string) {
    this.client = new grpc.Client(`unix://${socket}`, grpc.credentials.createInsecure());
  }

  close(): void {
    this.client.close();
  }

  call<T>(method: string, req: Record<string, unknown>, timeoutMs = 30_000): Promise<T> {
    const reqType = criRoot.lookupType(`runtime.v1.${method}Request`);
    const resType = criRoot.lookupType(`runtime.v1.${method}Response`);
    const service = method === "ListImages" ? "ImageService" : "RuntimeService";
    return new Promise<T>((resolve, reject) => {
      this.client.makeUnaryRequest(
        `/runtime.v1.${service}/${method}`,
        (r: Record<string, unknown>) => Buffer.from(reqType.encode(reqType.fromObject(r)).finish()),
        (b: Buffer) =>
          resType.toObject(resType.decode(b), { longs: Number, enums: String, defaults: true }) as T,
        req,
        { deadline: Date.now() + timeoutMs },
        (err, res) => (err ? reject(err) : resolve(res as T)),
      );
    });
  }

  async runPod(cfg: PodConfig, logDir: string): Promise<string> {
    const res = await this.call<{ pod_sandbox_id: string }>("RunPodSandbox", {
      config: {
        metadata: { name: cfg.name, uid: cfg.uid, namespace: cfg.namespace, attempt: 0 },
        hostname: cfg.name,
        log_directory: logDir,
        labels: cfg.labels ?? {},
        annotations: cfg.annotations ?? {},
        linux: { security_context: { namespace_options: { network: "POD", pid: "POD", ipc: "POD" } } },
      },
    });
    return res.pod_sandbox_id;
  }

  /** The pod's netns path from the verbose status (runtimeSpec.linux.namespaces). */
  async podNetns(id: string): Promise<string | undefined> {
    const res = await this.call<{ info: Record<string, string> }>("PodSandboxStatus", {
      pod_sandbox_id: id,
      verbose: true,
    });
    const info = JSON.parse(res.info.info ?? "{}") as {
      runtimeSpec?: { linux?: { namespaces?: { type: string; path?: string }[] } };
    };
    return info.runtimeSpec?.linux?.namespaces?.find((n) => n.type === "network")?.path;
  }

  async listPods(): Promise<string[]> {
    const res = await this.call<{ items: { id: string }[] }>("ListPodSandbox", {});
    return res.items.map((p) => p.id);
  }

  async removeAllPods(): Promise<void> {
    for (const id of await this.listPods()) {
      await this.call("StopPodSandbox", { pod_sandbox_id: id }).catch(() => undefined);
      await this.call("RemovePodSandbox", { pod_sandbox_id: id }).catch(() => undefined);
    }
  }

  async networkReady(): Promise<boolean> {
    const res = await this.call<{ status: { conditions: { type: string; status: boolean }[] } }>(
      "Status",
      {},
    );
    return res.status.conditions.some((c) => c.type === "NetworkReady" && c.status);
  }
}

/** Skip reason when the host cannot run the environment, else undefined. */
export function containerdUnavailable(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root";
  for (const bin of ["/usr/bin/containerd", "/usr/bin/ctr", "/usr/sbin/runc", "/usr/lib/cni/loopback"]) {
    if (!existsSync(bin)) {
      return `${bin} missing: bash scripts/setup-host.sh --extra='containerd|trixie|,runc||,containernetworking-plugins||'`;
    }
  }
  try {
    const v = execFileSync("/usr/bin/containerd", ["--version"], { encoding: "utf8" });
    if (!/ 1\.7\.|\s2\./.test(v)) return `containerd with NRI (>= 1.7) needed, found: ${v.trim()}`;
  } catch (e) {
    return `containerd --version failed: ${String(e)}`;
  }
  try {
    execFileSync("gcc", ["--version"], { stdio: "ignore" });
  } catch {
    return "gcc missing (needed to build the pause image)";
  }
  return undefined;
}

const STUB_CNI = `#!/bin/sh
# Reports one link-local IP for eth0 (no interface index, so go-cni files it under eth0) and creates
# nothing: the pod netns keeps only lo. DEL/CHECK/GC/STATUS succeed.
cfg=$(cat)
case "$CNI_COMMAND" in
VERSION) printf '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}\\n' ;;
ADD) printf '{"cniVersion":"1.0.0","ips":[{"address":"169.254.77.1/32"}]}\\n' ;;
DEL|CHECK|GC|STATUS) : ;;
*) printf '{"cniVersion":"1.0.0","code":4,"msg":"unknown command"}\\n'; exit 1 ;;
esac
`;

const PAUSE_C = `#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void on_term(int s) { (void)s; _exit(0); }
static void on_chld(int s) { (void)s; while (waitpid(-1, 0, WNOHANG) > 0) {} }
int main(void) {
  struct sigaction t = {0}, c = {0};
  t.sa_handler = on_term; sigaction(SIGTERM, &t, 0); sigaction(SIGINT, &t, 0);
  c.sa_handler = on_chld; c.sa_flags = SA_NOCLDSTOP; sigaction(SIGCHLD, &c, 0);
  for (;;) pause();
}
`;

export const PAUSE_IMAGE = "localhost/pause:nkit-nri-test";

export class ContainerdEnv {
  readonly dir: string;
  readonly socket: string;
  readonly nriSocket: string;
  readonly logFile: string;
  private proc: ChildProcess | undefined;
  cri: CriClient | undefined;

  constructor() {
    this.dir = mkdtempSync("/tmp/nkit-nri-");
    this.socket = join(this.dir, "containerd.sock");
    this.nriSocket = join(this.dir, "nri", "nri.sock");
    this.logFile = join(this.dir, "containerd.log");
  }

  podLogDir(name: string): string {
    const d = join(this.dir, "pods", name);
    mkdirSync(d, { recursive: true });
    return d;
  }

  /** `plugins`: pre-launched NRI plugins, file name (NN-name) to file content (made executable). */
  prepare(opts: { plugins?: Record<string, string> } = {}): void {
    const d = this.dir;
    for (const sub of [
      "root",
      "state",
      "nri/plugins",
      "nri/conf.d",
      "cni/bin",
      "cni/net.d",
      "pods",
      "image",
    ]) {
      mkdirSync(join(d, sub), { recursive: true });
    }
    chmodSync(join(d, "nri"), 0o700);
    writeFileSync(join(d, "cni/bin/nkit-stub"), STUB_CNI, { mode: 0o755 });
    symlinkSync("/usr/lib/cni/loopback", join(d, "cni/bin/loopback"));
    writeFileSync(
      join(d, "cni/net.d/10-stub.conflist"),
      JSON.stringify({ cniVersion: "1.0.0", name: "nkit-stub", plugins: [{ type: "nkit-stub" }] }),
    );
    for (const [file, text] of Object.entries(opts.plugins ?? {})) {
      writeFileSync(join(d, "nri/plugins", file), text, { mode: 0o755 });
    }
    writeFileSync(join(d, "config.toml"), this.config());
    this.buildPauseImage();
  }

  private config(): string {
    const d = this.dir;
    return `version = 2
root = "${d}/root"
state = "${d}/state"
[grpc]
  address = "${this.socket}"
[ttrpc]
  address = "${d}/containerd.sock.ttrpc"
[debug]
  level = "info"
[plugins]
  [plugins."io.containerd.nri.v1.nri"]
    disable = false
    disable_connections = false
    socket_path = "${this.nriSocket}"
    plugin_path = "${d}/nri/plugins"
    plugin_config_path = "${d}/nri/conf.d"
    plugin_registration_timeout = "5s"
    plugin_request_timeout = "2s"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "${PAUSE_IMAGE}"
    disable_tcp_service = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    enable_selinux = false
    disable_apparmor = true
    disable_hugetlb_controller = true
    tolerate_missing_hugetlb_controller = true
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "${d}/cni/bin"
      conf_dir = "${d}/cni/net.d"
      max_conf_num = 1
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          BinaryName = "/usr/sbin/runc"
          Root = "${d}/state/runc"
`;
  }

  /** OCI image layout tarball with a static pause binary, named PAUSE_IMAGE. */
  private buildPauseImage(): void {
    const b = join(this.dir, "image");
    writeFileSync(join(b, "pause.c"), PAUSE_C);
    mkdirSync(join(b, "rootfs"));
    execFileSync("gcc", ["-static", "-Os", "-s", "-o", join(b, "rootfs/pause"), join(b, "pause.c")]);
    const tarFlags = ["--sort=name", "--owner=0", "--group=0", "--numeric-owner", "--mtime=@0"];
    execFileSync("tar", [...tarFlags, "-C", join(b, "rootfs"), "-cf", join(b, "layer.tar"), "."]);
    const layout = join(b, "layout");
    mkdirSync(join(layout, "blobs/sha256"), { recursive: true });
    const blob = (data: Buffer) => {
      const h = createHash("sha256").update(data).digest("hex");
      writeFileSync(join(layout, "blobs/sha256", h), data);
      return { digest: `sha256:${h}`, size: data.length };
    };
    const layer = blob(readFileSync(join(b, "layer.tar")));
    const config = blob(
      Buffer.from(
        JSON.stringify({
          architecture: "amd64",
          os: "linux",
          config: { Entrypoint: ["/pause"], WorkingDir: "/" },
          rootfs: { type: "layers", diff_ids: [layer.digest] },
          history: [{ created_by: "nkit nri-env" }],
        }),
      ),
    );
    const manifest = blob(
      Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
          layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", ...layer }],
        }),
      ),
    );
    writeFileSync(
      join(layout, "index.json"),
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: [
          {
            mediaType: "application/vnd.oci.image.manifest.v1+json",
            ...manifest,
            platform: { architecture: "amd64", os: "linux" },
            annotations: {
              "io.containerd.image.name": PAUSE_IMAGE,
              "org.opencontainers.image.ref.name": PAUSE_IMAGE,
            },
          },
        ],
      }),
    );
    writeFileSync(join(layout, "oci-layout"), '{"imageLayoutVersion":"1.0.0"}');
    execFileSync("tar", [
      ...tarFlags,
      "-C",
      layout,
      "-cf",
      join(b, "pause.oci.tar"),
      "oci-layout",
      "index.json",
      "blobs",
    ]);
  }

  /** Starts containerd and waits until its API and NRI sockets accept connections and CNI is ready. */
  async start(): Promise<void> {
    const log = openSync(this.logFile, "a");
    this.proc = spawn("/usr/bin/containerd", ["--config", join(this.dir, "config.toml")], {
      stdio: ["ignore", log, log],
      detached: true,
      env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" },
    });
    closeSync(log);
    const exited = new Promise<never>((_, reject) =>
      this.proc?.once("exit", (code) => reject(new Error(`containerd exited (${code}):\n${this.logTail()}`))),
    );
    exited.catch(() => undefined);
    await Promise.race([this.waitListening(this.socket), exited]);
    await Promise.race([this.waitListening(this.nriSocket), exited]);
    this.cri ??= new CriClient(this.socket);
    const imported = execFileSync(
      "/usr/bin/ctr",
      ["-a", this.socket, "-n", "k8s.io", "images", "import", join(this.dir, "image/pause.oci.tar")],
      { encoding: "utf8" },
    );
    void imported;
    const until = Date.now() + 20_000;
    while (!(await this.cri.networkReady())) {
      if (Date.now() > until) throw new Error(`CRI NetworkReady never became true:\n${this.logTail()}`);
      await sleep(100);
    }
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** SIGTERM containerd (pods keep running in their shims; remove them first) and wait for it. */
  async stopContainerd(): Promise<void> {
    const p = this.proc;
    this.proc = undefined;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise<void>((r) => p.once("exit", () => r()));
    p.kill("SIGTERM");
    const t = setTimeout(() => p.kill("SIGKILL"), 10_000);
    await gone;
    clearTimeout(t);
  }

  /** Removes every pod, stops containerd, unmounts leftovers and deletes the directory. */
  async teardown(): Promise<void> {
    try {
      if (this.proc && this.cri) await this.cri.removeAllPods().catch(() => undefined);
    } finally {
      this.cri?.close();
      this.cri = undefined;
      await this.stopContainerd();
      // Shims of pods that could not be removed: kill those whose command line names our directory.
      for (const pid of pidsMentioning(this.dir)) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
      const mounts = readFileSync("/proc/self/mounts", "utf8")
        .split("\n")
        .map((l) => l.split(" ")[1] ?? "")
        .filter((m) => m.startsWith(`${this.dir}/`))
        .sort((a, b) => b.length - a.length);
      for (const m of mounts) {
        try {
          execFileSync("umount", ["-l", m], { stdio: "ignore" });
        } catch {
          // best effort
        }
      }
      rmSync(this.dir, { recursive: true, force: true });
    }
  }

  logTail(lines = 40): string {
    try {
      return readFileSync(this.logFile, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
      return "(no containerd log)";
    }
  }

  /** Lines of the containerd log matching `re`. */
  logLines(re: RegExp): string[] {
    try {
      return readFileSync(this.logFile, "utf8")
        .split("\n")
        .filter((l) => re.test(l));
    } catch {
      return [];
    }
  }

  private async waitListening(path: string, timeoutMs = 15_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const ok = await new Promise<boolean>((resolve) => {
        const s = net.createConnection(path);
        s.once("connect", () => {
          s.destroy();
          resolve(true);
        });
        s.once("error", () => resolve(false));
      });
      if (ok) return;
      if (Date.now() > until)
        throw new Error(`${path} is not listening after ${timeoutMs} ms:\n${this.logTail()}`);
      await sleep(100);
    }
  }
}

function pidsMentioning(text: string): number[] {
  const out: number[] = [];
  for (const entry of execFileSync("ps", ["-eo", "pid=,args="], { encoding: "utf8" }).split("\n")) {
    const m = /^\s*(\d+)\s+(.*)$/.exec(entry);
    if (m?.[2]?.includes(text) && Number(m[1]) !== process.pid) out.push(Number(m[1]));
  }
  return out;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
