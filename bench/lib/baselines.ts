// Baseline topologies for the datapath benchmark, each in its own throwaway "host" netns so the
// real host is never touched: (c) veth + Linux bridge + iptables masquerade, as nerdctl's and
// Nomad's bridge CNI chains build it, and (d) plain routed veth (/32 pods, kernel L3 forwarding).
import { randomBytes } from "node:crypto";
import { sh } from "./proc.js";

export interface PodPair {
  client: { netnsPath: string; ipv4: string };
  server: { netnsPath: string; ipv4: string };
  teardown(): Promise<void>;
}

const tag = () => randomBytes(3).toString("hex");

async function netns(name: string): Promise<string> {
  await sh("ip", ["netns", "add", name]);
  await sh("ip", ["-n", name, "link", "set", "lo", "up"]);
  return `/run/netns/${name}`;
}

async function delNetns(names: readonly string[]): Promise<void> {
  for (const n of names) await sh("ip", ["netns", "del", n]).catch(() => undefined);
}

export async function bridgeTopology(bigTcp = false): Promise<PodPair> {
  const t = tag();
  const host = `nkb-br-${t}-h`;
  const pods = [`nkb-br-${t}-1`, `nkb-br-${t}-2`];
  const names = [host, ...pods];
  try {
    const hostPath = await netns(host);
    await sh("ip", ["-n", host, "link", "add", "br0", "type", "bridge"]);
    await sh("ip", ["-n", host, "addr", "add", "10.201.0.254/24", "dev", "br0"]);
    await sh("ip", ["-n", host, "link", "set", "br0", "up"]);
    for (const [i, pod] of pods.entries()) {
      await netns(pod);
      await sh("ip", [
        "-n",
        host,
        "link",
        "add",
        `veth${i}`,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        pod,
      ]);
      await sh("ip", ["-n", host, "link", "set", `veth${i}`, "master", "br0", "up"]);
      await sh("ip", ["-n", pod, "addr", "add", `10.201.0.${i + 1}/24`, "dev", "eth0"]);
      await sh("ip", ["-n", pod, "link", "set", "eth0", "up"]);
      await sh("ip", ["-n", pod, "route", "add", "default", "via", "10.201.0.254"]);
      if (bigTcp) await applyBigTcp(pod, "eth0", host, `veth${i}`);
    }
    await sh("sysctl", ["-qw", "net.ipv4.ip_forward=1"], { netnsPath: hostPath });
    const ipt = (args: string[]) => sh("iptables", args, { netnsPath: hostPath });
    await ipt([
      "-t",
      "nat",
      "-A",
      "POSTROUTING",
      "-s",
      "10.201.0.0/24",
      "!",
      "-o",
      "br0",
      "-j",
      "MASQUERADE",
    ]);
    await ipt(["-A", "FORWARD", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"]);
    await ipt(["-A", "FORWARD", "-i", "br0", "-o", "br0", "-j", "ACCEPT"]);
  } catch (e) {
    await delNetns(names);
    throw e;
  }
  return {
    client: { netnsPath: `/run/netns/${pods[0]}`, ipv4: "10.201.0.1" },
    server: { netnsPath: `/run/netns/${pods[1]}`, ipv4: "10.201.0.2" },
    teardown: () => delNetns(names),
  };
}

export async function routedTopology(bigTcp = false): Promise<PodPair> {
  const t = tag();
  const host = `nkb-rt-${t}-h`;
  const pods = [`nkb-rt-${t}-1`, `nkb-rt-${t}-2`];
  const names = [host, ...pods];
  try {
    const hostPath = await netns(host);
    for (const [i, pod] of pods.entries()) {
      await netns(pod);
      const hostIf = `h${i}`;
      const ip = `10.202.0.${i + 1}`;
      await sh("ip", [
        "-n",
        host,
        "link",
        "add",
        hostIf,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        pod,
      ]);
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
      await sh("ip", [
        "-n",
        host,
        "neigh",
        "replace",
        ip,
        "lladdr",
        podMac,
        "dev",
        hostIf,
        "nud",
        "permanent",
      ]);
      if (bigTcp) await applyBigTcp(pod, "eth0", host, hostIf);
    }
    await sh("sysctl", ["-qw", "net.ipv4.ip_forward=1"], { netnsPath: hostPath });
  } catch (e) {
    await delNetns(names);
    throw e;
  }
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

async function applyBigTcp(podNs: string, podIf: string, hostNs: string, hostIf: string): Promise<void> {
  const sizes = [
    "gso_max_size",
    "196608",
    "gro_max_size",
    "196608",
    "gso_ipv4_max_size",
    "196608",
    "gro_ipv4_max_size",
    "196608",
  ];
  await sh("ip", ["-n", podNs, "link", "set", podIf, ...sizes]);
  await sh("ip", ["-n", hostNs, "link", "set", hostIf, ...sizes]);
}
