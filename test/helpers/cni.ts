// The real nkit-cni binary, run the way containerd, nerdctl and Nomad run a CNI plugin: only the
// CNI environment (nothing inherited from the test process) and a network configuration on stdin.
import { spawn } from "node:child_process";
import { join } from "node:path";

export const SHIM = join(import.meta.dirname, "..", "..", "native", "cni", "build", "nkit-cni");

export interface ShimRun {
  code: number;
  stdout: string;
  json: Record<string, unknown> | undefined;
}

export interface CallOptions {
  containerId?: string;
  netns?: string;
  ifName?: string;
  args?: string;
  conf?: Record<string, unknown>;
  stdin?: string;
}

export function runShim(command: string | undefined, o: CallOptions & { socket: string }): Promise<ShimRun> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? "/usr/bin:/bin" };
  if (command !== undefined) env.CNI_COMMAND = command;
  if (o.containerId !== undefined) env.CNI_CONTAINERID = o.containerId;
  if (o.netns !== undefined) env.CNI_NETNS = o.netns;
  env.CNI_IFNAME = o.ifName ?? "eth0";
  env.CNI_ARGS = o.args ?? "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web";
  env.CNI_PATH = "/opt/cni/bin";
  const stdin =
    o.stdin ??
    JSON.stringify({ cniVersion: "1.1.0", name: "nkt-net", type: "nkit-cni", socket: o.socket, ...o.conf });
  return new Promise((resolve, reject) => {
    const child = spawn(SHIM, [], { env, stdio: ["pipe", "pipe", "inherit"] });
    let stdout = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.once("error", reject);
    child.once("close", (code) => {
      let json: Record<string, unknown> | undefined;
      try {
        json = stdout.trim() ? (JSON.parse(stdout) as Record<string, unknown>) : undefined;
      } catch {
        json = undefined;
      }
      resolve({ code: code ?? -1, stdout, json });
    });
    child.stdin.on("error", () => undefined); // without CNI_COMMAND the shim never reads stdin
    child.stdin.end(stdin);
  });
}

/** A port mapping as containerd's go-cni passes it (Go field names). */
export interface GoPortMapping {
  HostPort: number;
  ContainerPort: number;
  Protocol: string;
  HostIP: string;
}

/** nkit-cni in mode wire with port mappings, the way nerdctl's `-p` reaches it. */
export function runShimWithPorts(
  command: string,
  o: { socket: string; containerId: string; netns?: string; portMappings: GoPortMapping[] },
): Promise<ShimRun> {
  return runShim(command, {
    socket: o.socket,
    containerId: o.containerId,
    ...(o.netns ? { netns: o.netns } : {}),
    args: "IgnoreUnknown=1",
    conf: {
      cniVersion: "1.0.0",
      name: "nkit",
      mode: "wire",
      capabilities: { portMappings: true },
      runtimeConfig: { portMappings: o.portMappings },
    },
  });
}
