// A typed CRI (runtime.v1) client for the e2e harness: @grpc/grpc-js over containerd's unix socket, with
// messages encoded by protobufjs from the hand-written subset in proto/cri/api.proto (loaded at runtime).
// Field names are protobufjs' camelCase forms of the proto names. int64 fields arrive as decimal strings,
// enums as their names, bytes as Buffers; absent sub-messages as null.
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import protobuf from "protobufjs";

/** proto/cri/api.proto, found upwards: this file also runs compiled (bench/dist, demo/dist). */
export const CRI_PROTO_PATH = ((): string => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, "proto", "cri", "api.proto");
    if (existsSync(candidate)) return candidate;
    const up = dirname(dir);
    if (up === dir)
      throw new Error("cannot find proto/cri/api.proto above " + fileURLToPath(import.meta.url));
    dir = up;
  }
})();

export type NamespaceMode = "POD" | "CONTAINER" | "NODE" | "TARGET";
export type PodSandboxState = "SANDBOX_READY" | "SANDBOX_NOTREADY";
export type ContainerState =
  | "CONTAINER_CREATED"
  | "CONTAINER_RUNNING"
  | "CONTAINER_EXITED"
  | "CONTAINER_UNKNOWN";
type StringMap = Record<string, string>;

// ------------------------------------------------------------------------------------------ requests
export interface NamespaceOption {
  network?: NamespaceMode;
  pid?: NamespaceMode;
  ipc?: NamespaceMode;
  targetId?: string;
}

export interface PodSandboxMetadata {
  name: string;
  uid: string;
  namespace: string;
  attempt?: number;
}

export interface CriPortMapping {
  protocol?: "TCP" | "UDP" | "SCTP";
  containerPort: number;
  hostPort: number;
  hostIp?: string;
}

export interface PodSandboxConfig {
  metadata: PodSandboxMetadata;
  hostname?: string;
  /** Absolute path; container log paths are relative to it. */
  logDirectory?: string;
  dnsConfig?: { servers?: string[]; searches?: string[]; options?: string[] };
  /** Host ports (what crictl's pod config "port_mappings" and kubelet's hostPort send). */
  portMappings?: CriPortMapping[];
  labels?: StringMap;
  annotations?: StringMap;
  linux?: {
    cgroupParent?: string;
    securityContext?: { namespaceOptions?: NamespaceOption; privileged?: boolean };
    sysctls?: StringMap;
  };
}

export interface ContainerConfig {
  metadata: { name: string; attempt?: number };
  image: { image: string };
  command?: string[];
  args?: string[];
  workingDir?: string;
  envs?: { key: string; value: string }[];
  mounts?: { containerPath: string; hostPath: string; readonly?: boolean }[];
  labels?: StringMap;
  annotations?: StringMap;
  /** Relative to the sandbox's logDirectory. */
  logPath?: string;
  linux?: {
    securityContext?: {
      capabilities?: { addCapabilities?: string[]; dropCapabilities?: string[] };
      privileged?: boolean;
      namespaceOptions?: NamespaceOption;
    };
  };
}

export interface PodSandboxFilter {
  id?: string;
  state?: { state: PodSandboxState };
  labelSelector?: StringMap;
}

export interface ContainerFilter {
  id?: string;
  state?: { state: ContainerState };
  podSandboxId?: string;
  labelSelector?: StringMap;
}

// ----------------------------------------------------------------------------------------- responses
export interface VersionResponse {
  version: string;
  runtimeName: string;
  runtimeVersion: string;
  runtimeApiVersion: string;
}

export interface RuntimeCondition {
  type: string;
  status: boolean;
  reason: string;
  message: string;
}

export interface StatusResponse {
  status: { conditions: RuntimeCondition[] } | null;
  info: StringMap;
}

export interface PodSandboxStatus {
  id: string;
  metadata: PodSandboxMetadata | null;
  state: PodSandboxState;
  createdAt: string;
  network: { ip: string; additionalIps: { ip: string }[] } | null;
  labels: StringMap;
  annotations: StringMap;
  runtimeHandler: string;
}

export interface PodSandboxStatusResponse {
  status: PodSandboxStatus | null;
  /** With verbose=true, containerd puts a JSON document under the key "info". */
  info: StringMap;
}

export interface PodSandbox {
  id: string;
  metadata: PodSandboxMetadata | null;
  state: PodSandboxState;
  createdAt: string;
  labels: StringMap;
  annotations: StringMap;
  runtimeHandler: string;
}

export interface Container {
  id: string;
  podSandboxId: string;
  metadata: { name: string; attempt: number } | null;
  image: { image: string } | null;
  imageRef: string;
  state: ContainerState;
  createdAt: string;
  labels: StringMap;
  annotations: StringMap;
}

export interface ContainerStatus {
  id: string;
  metadata: { name: string; attempt: number } | null;
  state: ContainerState;
  createdAt: string;
  startedAt: string;
  finishedAt: string;
  exitCode: number;
  image: { image: string } | null;
  imageRef: string;
  reason: string;
  message: string;
  labels: StringMap;
  annotations: StringMap;
  logPath: string;
}

export interface ExecSyncResponse {
  stdout: Buffer;
  stderr: Buffer;
  exitCode: number;
}

export interface Image {
  id: string;
  repoTags: string[];
  repoDigests: string[];
  size: string;
}

// --------------------------------------------------------------------------------------------- wire
interface Codec {
  encode(value: object): Buffer;
  decode(buf: Buffer): unknown;
}

let root: protobuf.Root | undefined;

function codec(typeName: string): Codec {
  root ??= protobuf.loadSync(CRI_PROTO_PATH);
  const type = root.lookupType(`runtime.v1.${typeName}`);
  return {
    encode: (value) => Buffer.from(type.encode(type.fromObject(value as Record<string, unknown>)).finish()),
    decode: (buf) =>
      type.toObject(type.decode(buf), {
        longs: String,
        enums: String,
        bytes: Buffer,
        defaults: true,
        arrays: true,
        objects: true,
      }),
  };
}

export interface CallOptions {
  /** Per-call deadline; defaults to the client's (60 s). */
  timeoutMs?: number;
}

export class CriError extends Error {
  constructor(
    readonly method: string,
    readonly code: grpc.status | undefined,
    readonly details: string,
    options?: ErrorOptions,
  ) {
    super(`CRI ${method} failed: ${code === undefined ? "" : `${grpc.status[code]}: `}${details}`, options);
    this.name = "CriError";
  }
}

/** One CRI connection (RuntimeService and ImageService share the socket). */
export class CriClient {
  private readonly client: grpc.Client;
  private readonly codecs = new Map<string, Codec>();

  constructor(
    readonly socketPath: string,
    private readonly defaultTimeoutMs = 60_000,
  ) {
    this.client = new grpc.Client(`unix://${socketPath}`, grpc.credentials.createInsecure(), {
      "grpc.max_receive_message_length": 16 << 20,
    });
  }

  close(): void {
    this.client.close();
  }

  private codecFor(typeName: string): Codec {
    let c = this.codecs.get(typeName);
    if (!c) {
      c = codec(typeName);
      this.codecs.set(typeName, c);
    }
    return c;
  }

  private call<Res>(
    service: "RuntimeService" | "ImageService",
    method: string,
    request: object,
    opts: CallOptions = {},
  ): Promise<Res> {
    const req = this.codecFor(`${method}Request`);
    const res = this.codecFor(`${method}Response`);
    const deadline = Date.now() + (opts.timeoutMs ?? this.defaultTimeoutMs);
    return new Promise<Res>((resolve, reject) => {
      this.client.makeUnaryRequest<object, unknown>(
        `/runtime.v1.${service}/${method}`,
        (v) => req.encode(v),
        (b) => res.decode(b),
        request,
        new grpc.Metadata(),
        { deadline },
        (err, value) => {
          if (err) reject(new CriError(method, err.code, err.details || err.message, { cause: err }));
          // the decoder above produced exactly this message type (see proto/cri/api.proto)
          else resolve(value as Res);
        },
      );
    });
  }

  version(opts?: CallOptions): Promise<VersionResponse> {
    return this.call("RuntimeService", "Version", { version: "v1" }, opts);
  }

  status(verbose = false, opts?: CallOptions): Promise<StatusResponse> {
    return this.call("RuntimeService", "Status", { verbose }, opts);
  }

  async runPodSandbox(config: PodSandboxConfig, runtimeHandler = "", opts?: CallOptions): Promise<string> {
    const r = await this.call<{ podSandboxId: string }>(
      "RuntimeService",
      "RunPodSandbox",
      { config, runtimeHandler },
      opts,
    );
    return r.podSandboxId;
  }

  async stopPodSandbox(podSandboxId: string, opts?: CallOptions): Promise<void> {
    await this.call("RuntimeService", "StopPodSandbox", { podSandboxId }, opts);
  }

  async removePodSandbox(podSandboxId: string, opts?: CallOptions): Promise<void> {
    await this.call("RuntimeService", "RemovePodSandbox", { podSandboxId }, opts);
  }

  podSandboxStatus(
    podSandboxId: string,
    verbose = false,
    opts?: CallOptions,
  ): Promise<PodSandboxStatusResponse> {
    return this.call("RuntimeService", "PodSandboxStatus", { podSandboxId, verbose }, opts);
  }

  async listPodSandbox(filter: PodSandboxFilter = {}, opts?: CallOptions): Promise<PodSandbox[]> {
    const r = await this.call<{ items: PodSandbox[] }>("RuntimeService", "ListPodSandbox", { filter }, opts);
    return r.items;
  }

  async createContainer(
    podSandboxId: string,
    config: ContainerConfig,
    sandboxConfig: PodSandboxConfig,
    opts?: CallOptions,
  ): Promise<string> {
    const r = await this.call<{ containerId: string }>(
      "RuntimeService",
      "CreateContainer",
      { podSandboxId, config, sandboxConfig },
      opts,
    );
    return r.containerId;
  }

  async startContainer(containerId: string, opts?: CallOptions): Promise<void> {
    await this.call("RuntimeService", "StartContainer", { containerId }, opts);
  }

  /** timeoutSec: grace period before SIGKILL. */
  async stopContainer(containerId: string, timeoutSec = 0, opts?: CallOptions): Promise<void> {
    await this.call("RuntimeService", "StopContainer", { containerId, timeout: timeoutSec }, opts);
  }

  async removeContainer(containerId: string, opts?: CallOptions): Promise<void> {
    await this.call("RuntimeService", "RemoveContainer", { containerId }, opts);
  }

  async listContainers(filter: ContainerFilter = {}, opts?: CallOptions): Promise<Container[]> {
    const r = await this.call<{ containers: Container[] }>(
      "RuntimeService",
      "ListContainers",
      { filter },
      opts,
    );
    return r.containers;
  }

  containerStatus(
    containerId: string,
    verbose = false,
    opts?: CallOptions,
  ): Promise<{ status: ContainerStatus | null; info: StringMap }> {
    return this.call("RuntimeService", "ContainerStatus", { containerId, verbose }, opts);
  }

  /** timeoutSec: 0 = no limit on the runtime side; the gRPC deadline still applies. */
  execSync(
    containerId: string,
    cmd: string[],
    timeoutSec = 0,
    opts?: CallOptions,
  ): Promise<ExecSyncResponse> {
    const callOpts = {
      timeoutMs: Math.max(opts?.timeoutMs ?? this.defaultTimeoutMs, (timeoutSec + 10) * 1000),
    };
    return this.call("RuntimeService", "ExecSync", { containerId, cmd, timeout: timeoutSec }, callOpts);
  }

  async listImages(opts?: CallOptions): Promise<Image[]> {
    const r = await this.call<{ images: Image[] }>("ImageService", "ListImages", {}, opts);
    return r.images;
  }
}
