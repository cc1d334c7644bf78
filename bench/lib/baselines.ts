// Baseline topologies for the datapath benchmark, each in its own throwaway "host" netns so the
// real host is never touched: (c) veth + Linux bridge + iptables masquerade, as nerdctl's and
// Nomad's bridge CNI chains build it, and (d) plain routed veth (/32 pods, kernel L3 forwarding).
// Every netns is registered with the cleanup before it exists.
import { randomBytes } from "node:crypto";
import type { Cleanup } from "./cleanup.js";
import { sh } from "./proc.js";

interface PodPair {
  client: { netnsPath: string; ipv4: string };
  server: { netnsPath: string; ipv4: string };
  teardown(): Promise<void>;
}

interface TopologyOptions {
  /** Prefix of every netns name (unique per benchmark run), e.g. "nkb-1a2b". */
  prefix: string;
  bigTcp?: boolean;
  cleanup: Cleanup;
}

const tag = () => randomBytes(2).toString("hex");

export async function addNetns(
  name: string,
  cleanup: Cleanup,
): Promise<{ path: string; del: () => Promise<void> }> {
  const del = cleanup.defer(`netns ${name}`, () => delNetns([name]));
  await sh("ip", ["netns", "add", name]);
  await sh("ip", ["-n", name, "link", "set", "lo", "up"]);
  return { path: `/run/netns/${name}`, del };
}

export async function delNetns(names: readonly string[]): Promise<void> {
  for (const n of names) await sh("ip", ["netns", "del", n]).catch(() => undefined);
}

/** A bridge "host" netns: br0 with the pods' gateway, forwarding, masquerade and FORWARD rules. */
export async function bridgeHost(name: string, cleanup: Cleanup, subnet = "10.201.0"): Promise<string> {
  const { path } = await addNetns(name, cleanup);
  await sh("ip", ["-n", name, "link", "add", "br0", "type", "bridge"]);
  await sh("ip", ["-n", name, "addr", "add", `${subnet}.254/24`, "dev", "br0"]);
  await sh("ip", ["-n", name, "link", "set", "br0", "up"]);
  await sh("sysctl", ["-qw", "net.ipv4.ip_forward=1"], { netnsPath: path });
  const ipt = (args: string[]) => sh("iptables", args, { netnsPath: path });
  await ipt(["-t", "nat", "-A", "POSTROUTING", "-s", `${subnet}.0/24`, "!", "-o", "br0", "-j", "MASQUERADE"]);
  await ipt(["-A", "FORWARD", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"]);
  await ipt(["-A", "FORWARD", "-i", "br0", "-o", "br0", "-j", "ACCEPT"]);
  return path;
}

/**
 * What the bridge CNI plugin does for one pod, as iproute2 commands (one process each):
 * veth pair into the pod, host end on br0, address, link up, default route via the bridge.
 */
export const BRIDGE_POD_COMMANDS = 5;
export async function bridgeAttachPod(
  host: string,
  pod: string,
  hostIf: string,
  ipv4: string,
  subnet = "10.201.0",
): Promise<void> {
  await sh("ip", ["-n", host, "link", "add", hostIf, "type", "veth", "peer", "name", "eth0", "netns", pod]);
  await sh("ip", ["-n", host, "link", "set", hostIf, "master", "br0", "up"]);
  await sh("ip", ["-n", pod, "addr", "add", `${ipv4}/24`, "dev", "eth0"]);
  await sh("ip", ["-n", pod, "link", "set", "eth0", "up"]);
  await sh("ip", ["-n", pod, "route", "add", "default", "via", `${subnet}.254`]);
}

export async function bridgeTopology(o: TopologyOptions): Promise<PodPair> {
  const t = tag();
  const base = `${o.prefix}-br${o.bigTcp ? "big" : ""}-${t}`;
  const host = `${base}-h`;
  const pods = [`${base}-1`, `${base}-2`];
  const names = [host, ...pods];
  await bridgeHost(host, o.cleanup);
  for (const [i, pod] of pods.entries()) {
    await addNetns(pod, o.cleanup);
    await bridgeAttachPod(host, pod, `veth${i}`, `10.201.0.${i + 1}`);
    if (o.bigTcp) await applyBigTcp(pod, "eth0", host, `veth${i}`);
  }
  return {
    client: { netnsPath: `/run/netns/${pods[0]}`, ipv4: "10.201.0.1" },
    server: { netnsPath: `/run/netns/${pods[1]}`, ipv4: "10.201.0.2" },
    teardown: () => delNetns(names),
  };
}

export async function routedTopology(o: TopologyOptions): Promise<PodPair> {
  const t = tag();
  const base = `${o.prefix}-rt${o.bigTcp ? "big" : ""}-${t}`;
  const host = `${base}-h`;
  const pods = [`${base}-1`, `${base}-2`];
  const names = [host, ...pods];
  const { path: hostPath } = await addNetns(host, o.cleanup);
  for (const [i, pod] of pods.entries()) {
    await addNetns(pod, o.cleanup);
    const hostIf = `h${i}`;
    const ip = `10.202.0.${i + 1}`;
    await sh("ip", ["-n", host, "link", "add", hostIf, "type", "veth", "peer", "name", "eth0", "netns", pod]);
    await sh("ip", ["-n", host, "link", "set", hostIf, "up"]);
    await sh("ip", ["-n", pod, "addr", "add", `${ip}/32`, "dev", "eth0"]);
    await sh("ip", ["-n", pod, "link", "set", "eth0", "up"]);
    const hostMac = await mac(host, hostIf);
    const podMac = await mac(pod, "eth0");
    await sh("ip", ["-n", pod, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link"]);
    await sh("ip", ["-n", pod, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0"]);
    await sh("ip", [
      "-n",
      pod,
      "neigh",
      "replace",
      "169.254.1.1",
      "lladdr",
      hostMac,
      "dev",
      "eth0",
      "nud",
      "permanent",
    ]);
    await sh("ip", ["-n", host, "route", "add", `${ip}/32`, "dev", hostIf, "scope", "link"]);
    await sh("ip", ["-n", host, "neigh", "replace", ip, "lladdr", podMac, "dev", hostIf, "nud", "permanent"]);
    if (o.bigTcp) await applyBigTcp(pod, "eth0", host, hostIf);
  }
  await sh("sysctl", ["-qw", "net.ipv4.ip_forward=1"], { netnsPath: hostPath });
  return {
    client: { netnsPath: `/run/netns/${pods[0]}`, ipv4: "10.202.0.1" },
    server: { netnsPath: `/run/netns/${pods[1]}`, ipv4: "10.202.0.2" },
    teardown: () => delNetns(names),
  };
}

async function mac(ns: string, dev: string): Promise<string> {
  const out = JSON.parse(await sh("ip", ["-n", ns, "-j", "link", "show", "dev", dev])) as {
    address: string;
  }[];
  return out[0]!.address;
}

const BIG_TCP_BYTES = 196608;

async function applyBigTcp(podNs: string, podIf: string, hostNs: string, hostIf: string): Promise<void> {
  const s = String(BIG_TCP_BYTES);
  const sizes = ["gso_max_size", s, "gro_max_size", s, "gso_ipv4_max_size", s, "gro_ipv4_max_size", s];
  await sh("ip", ["-n", podNs, "link", "set", podIf, ...sizes]);
  await sh("ip", ["-n", hostNs, "link", "set", hostIf, ...sizes]);
}
