// The typed face of the NRI messages nkit uses: plain objects (not protobufjs instances) converted
// from the generated code in ./gen/api.js, plus the encoders the plugin needs.
import { int64ToNumber } from "../ttrpc/proto.js";
import { nri } from "./gen/api.js";

const api = nri.pkg.api.v1alpha1;
type PodSandboxProps = nri.pkg.api.v1alpha1.PodSandbox.$Properties;
type ContainerProps = nri.pkg.api.v1alpha1.Container.$Properties;

export const RUNTIME_SERVICE = "nri.pkg.api.v1alpha1.Runtime";
export const PLUGIN_SERVICE = "nri.pkg.api.v1alpha1.Plugin";

/** NRI event numbers (the subscription mask bit of event e is 1 << (e - 1)). */
export const NriEvent = {
  RUN_POD_SANDBOX: 1,
  STOP_POD_SANDBOX: 2,
  REMOVE_POD_SANDBOX: 3,
} as const;

export function eventMask(...events: number[]): number {
  return events.reduce((m, e) => m | (1 << (e - 1)), 0);
}

/** RUN | STOP | REMOVE_POD_SANDBOX = 0x7. */
export const POD_SANDBOX_EVENTS = eventMask(
  NriEvent.RUN_POD_SANDBOX,
  NriEvent.STOP_POD_SANDBOX,
  NriEvent.REMOVE_POD_SANDBOX,
);
/** Events every runtime since nri v0.3 accepts (bits 1–11); anything else fails Configure on older ones. */
export const VALID_EVENTS_V06 = 0x7ff;

export interface NriNamespace {
  /** OCI name: pid, network, mount, ipc, uts, user, cgroup, time. */
  type: string;
  /** "" = a new namespace owned by the pause process. */
  path: string;
}

export interface NriPodSandbox {
  id: string;
  name: string;
  uid: string;
  namespace: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  runtimeHandler: string;
  cgroupParent: string;
  cgroupsPath: string;
  namespaces: NriNamespace[];
  /** Path of the pod's network namespace; undefined for host-network pods and on STOP/REMOVE in 1.7. */
  netnsPath: string | undefined;
  /** Pause process pid; undefined when the runtime sent none (0), e.g. at STOP/REMOVE. */
  pid: number | undefined;
  /** Pod IPs; filled only by containerd >= 2.1. */
  ips: string[];
}

export interface NriContainer {
  id: string;
  podSandboxId: string;
  name: string;
  /** 0 UNKNOWN, 1 CREATED, 2 PAUSED, 3 RUNNING, 4 STOPPED */
  state: number;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  pid: number | undefined;
}

export interface NriConfigureInfo {
  /** Drop-in config text (pre-launched plugins only; "" for external plugins). */
  config: string;
  runtimeName: string;
  runtimeVersion: string;
  /** ms; 5000 when the runtime does not say (nri < v0.8). */
  registrationTimeoutMs: number;
  /** ms; 2000 when the runtime does not say (nri < v0.8). */
  requestTimeoutMs: number;
  /** The runtime's nri module version (nri >= v0.12), else "". */
  nriVersion: string;
}

function copyMap(m: { [k: string]: string } | null | undefined): Record<string, string> {
  return m ? { ...m } : {};
}

function toPodSandbox(p: PodSandboxProps | null | undefined): NriPodSandbox {
  const linux = p?.linux;
  const namespaces = (linux?.namespaces ?? []).map((n) => ({ type: n.type ?? "", path: n.path ?? "" }));
  const net = namespaces.find((n) => n.type === "network" && n.path !== "");
  return {
    id: p?.id ?? "",
    name: p?.name ?? "",
    uid: p?.uid ?? "",
    namespace: p?.namespace ?? "",
    labels: copyMap(p?.labels),
    annotations: copyMap(p?.annotations),
    runtimeHandler: p?.runtime_handler ?? "",
    cgroupParent: linux?.cgroup_parent ?? "",
    cgroupsPath: linux?.cgroups_path ?? "",
    namespaces,
    netnsPath: net?.path,
    pid: p?.pid ? p.pid : undefined,
    ips: [...(p?.ips ?? [])],
  };
}

function toContainer(c: ContainerProps): NriContainer {
  return {
    id: c.id ?? "",
    podSandboxId: c.pod_sandbox_id ?? "",
    name: c.name ?? "",
    state: c.state ?? 0,
    labels: copyMap(c.labels),
    annotations: copyMap(c.annotations),
    pid: c.pid ? c.pid : undefined,
  };
}

export function decodeConfigure(data: Uint8Array): NriConfigureInfo {
  const m = api.ConfigureRequest.decode(data);
  return {
    config: m.config,
    runtimeName: m.runtime_name,
    runtimeVersion: m.runtime_version,
    registrationTimeoutMs: int64ToNumber(m.registration_timeout) || 5000,
    requestTimeoutMs: int64ToNumber(m.request_timeout) || 2000,
    nriVersion: m.NRI_version,
  };
}

export function encodeConfigureResponse(events: number): Uint8Array {
  return api.ConfigureResponse.encode({ events }).finish();
}

interface SynchronizeChunk {
  pods: NriPodSandbox[];
  containers: NriContainer[];
  more: boolean;
}

export function decodeSynchronize(data: Uint8Array): SynchronizeChunk {
  const m = api.SynchronizeRequest.decode(data);
  return { pods: m.pods.map(toPodSandbox), containers: m.containers.map(toContainer), more: m.more };
}

export function encodeSynchronizeResponse(more: boolean): Uint8Array {
  return api.SynchronizeResponse.encode(more ? { more: true } : {}).finish();
}

export function decodeStateChange(data: Uint8Array): { event: number; pod: NriPodSandbox } {
  const m = api.StateChangeEvent.decode(data);
  return { event: m.event, pod: toPodSandbox(m.pod) };
}

/** RunPodSandboxRequest, StopPodSandboxRequest and RemovePodSandboxRequest share the layout {pod=1}. */
export function decodePodRequest(data: Uint8Array): NriPodSandbox {
  return toPodSandbox(api.RunPodSandboxRequest.decode(data).pod);
}

export function encodeRegister(name: string, index: string): Uint8Array {
  return api.RegisterPluginRequest.encode({ plugin_name: name, plugin_idx: index }).finish();
}

export const EMPTY = new Uint8Array(0);

/** Encoders for the runtime side, used by tests that play containerd. */
export const runtimeSide = {
  encodeConfigure(c: Partial<NriConfigureInfo>): Uint8Array {
    return api.ConfigureRequest.encode({
      config: c.config ?? "",
      runtime_name: c.runtimeName ?? "",
      runtime_version: c.runtimeVersion ?? "",
      ...(c.registrationTimeoutMs ? { registration_timeout: c.registrationTimeoutMs } : {}),
      ...(c.requestTimeoutMs ? { request_timeout: c.requestTimeoutMs } : {}),
    }).finish();
  },
  decodeConfigureResponse(data: Uint8Array): number {
    return api.ConfigureResponse.decode(data).events;
  },
  decodeRegister(data: Uint8Array): { name: string; index: string } {
    const m = api.RegisterPluginRequest.decode(data);
    return { name: m.plugin_name, index: m.plugin_idx };
  },
  encodeSynchronize(pods: PodSandboxProps[], more = false): Uint8Array {
    return api.SynchronizeRequest.encode({ pods, more }).finish();
  },
  decodeSynchronizeResponse(data: Uint8Array): { more: boolean; updates: number } {
    const m = api.SynchronizeResponse.decode(data);
    return { more: m.more, updates: m.update.length };
  },
  encodeStateChange(event: number, pod: PodSandboxProps): Uint8Array {
    return api.StateChangeEvent.encode({ event, pod }).finish();
  },
  encodePodRequest(pod: PodSandboxProps): Uint8Array {
    return api.RunPodSandboxRequest.encode({ pod }).finish();
  },
};

export type PodSandboxMessage = PodSandboxProps;
