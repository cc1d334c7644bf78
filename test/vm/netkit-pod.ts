// Shared setup for the netkit VM lane tests: a pod wired the way the design wires netkit endpoints
// (L3 pair, peer created directly in the pod netns as eth0, /32 + /128 addresses, default routes via
// eth0, host routes via the primary), entirely through src/netlink. Only meaningful on a kernel with
// netkit: these helpers never skip, they fail.
import { randomInt } from "node:crypto";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { probeNetkit } from "../../src/bpf/index.js";
import type { Link, NetkitPolicyInput } from "../../src/netlink/index.js";
import { Rtnl } from "../../src/netlink/index.js";
import { uniqueIfName } from "../helpers/names.js";
import { createNetns, type TestNetns } from "../helpers/netns.js";
import type { Scope } from "../helpers/scope.js";
import { inNetns, ipJson, run } from "../helpers/sys.js";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const COUNTER_OBJ = join(ROOT, "bpf", "build", "test", "counter.bpf.o");

/** Fails (never skips) when the kernel has no netkit: the VM lane exists to run these for real. */
export function requireNetkitKernel(): void {
  const p = probeNetkit();
  if (!p.supported) {
    throw new Error(
      `this test needs a kernel with netkit (run it through \`npm run test:vm\`): ${p.reason}; needs ${p.need}`,
    );
  }
}

export interface NetkitPod {
  ns: TestNetns;
  host: Rtnl;
  pod: Rtnl;
  /** host-side (primary) device */
  primary: Link;
  /** eth0 inside the pod */
  peer: Link;
  hostV4: string;
  podV4: string;
  hostV6: string;
  podV6: string;
}

export interface PodOptions {
  policy?: NetkitPolicyInput;
  peerPolicy?: NetkitPolicyInput;
}

/** Creates and addresses a netkit pod; everything is removed by scope (the netns takes eth0 along). */
export async function createNetkitPod(scope: Scope, opts: PodOptions = {}): Promise<NetkitPod> {
  const ns = await createNetns(scope, "nk");
  const host = await Rtnl.host();
  scope.defer(() => host.close());
  const pod = await Rtnl.inNetns(ns.path);
  scope.defer(() => pod.close());
  const name = uniqueIfName("n");
  scope.defer(() => host.deleteLink(name).catch(() => undefined));
  await host.createNetkit({
    name,
    peerName: "eth0",
    peerNetnsPath: ns.path,
    mode: "l3",
    policy: opts.policy ?? "forward",
    peerPolicy: opts.peerPolicy ?? "forward",
  });
  // a random /24-sized slice of 10.47.128.0/17 and fd47:8000::/33 keeps repeated runs apart
  const n = randomInt(0, 8192);
  const [a, b] = [128 + (n >> 6), (n & 0x3f) * 4];
  const hostV4 = `10.47.${a}.${b + 1}`;
  const podV4 = `10.47.${a}.${b + 2}`;
  const hostV6 = `fd47:8000::${n.toString(16)}:1`;
  const podV6 = `fd47:8000::${n.toString(16)}:2`;

  await host.addAddress({ link: name, address: `${hostV4}/32` });
  await host.addAddress({ link: name, address: `${hostV6}/128` });
  await host.setLinkUp(name);
  await host.addRoute({ dst: `${podV4}/32`, dev: name, src: hostV4 });
  await host.addRoute({ dst: `${podV6}/128`, dev: name, src: hostV6 });

  await pod.addAddress({ link: "eth0", address: `${podV4}/32` });
  await pod.addAddress({ link: "eth0", address: `${podV6}/128` });
  await pod.setLinkUp("eth0");
  // L3 netkit: no ARP/NDP, so plain device routes reach the host
  await pod.addRoute({ dst: "default", family: 4, dev: "eth0", src: podV4 });
  await pod.addRoute({ dst: "default", family: 6, dev: "eth0", src: podV6 });

  const peer = await pod.requireLink("eth0");
  return { ns, host, pod, primary: await host.requireLink(name), peer, hostV4, podV4, hostV6, podV6 };
}

/** count echo requests from the host to address; resolves only when every one is answered. */
export async function pingFromHost(address: string, count = 3): Promise<void> {
  await run("ping", ["-q", "-n", "-c", String(count), "-i", "0.1", "-W", "3", address]);
}

/** count echo requests from inside the pod; resolves only when every one is answered. */
export async function pingFromPod(pod: NetkitPod, address: string, count = 3): Promise<void> {
  await inNetns(pod.ns.path, "ping", ["-q", "-n", "-c", String(count), "-i", "0.1", "-W", "3", address]);
}

/** True when not a single reply came back. */
export async function pingFails(address: string, netnsPath?: string): Promise<boolean> {
  const args = ["-q", "-n", "-c", "2", "-i", "0.2", "-W", "1", address];
  try {
    if (netnsPath === undefined) await run("ping", args);
    else await inNetns(netnsPath, "ping", args);
    return false;
  } catch {
    return true;
  }
}

interface IpStatsLink {
  ifname: string;
  stats64: { rx: { packets: number; dropped: number }; tx: { packets: number; dropped: number } };
}

/** Kernel counters of a device (iproute2 as a second opinion). */
export async function linkStats(dev: string, netnsName?: string): Promise<IpStatsLink["stats64"]> {
  const [l] = await ipJson<IpStatsLink[]>(["-s", "link", "show", "dev", dev], netnsName);
  if (!l) throw new Error(`no device ${dev}`);
  return l.stats64;
}
