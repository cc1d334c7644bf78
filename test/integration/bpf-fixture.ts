// Shared setup for the BPF integration tests: object paths and a veth pair whose host end is in our
// netns (tcx attaches there) and whose peer sits in a throwaway netns. IPv6 is off and both sides
// have permanent neighbour entries, so the only frames on the wire are the ones a test sends.
import { existsSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { PinDir } from "../../src/bpf/pins.js";
import { uniqueBpffsDir, uniqueIfName } from "../helpers/names.js";
import { createNetns, type TestNetns } from "../helpers/netns.js";
import type { Scope } from "../helpers/scope.js";
import { inNetns, ipJson, run } from "../helpers/sys.js";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const COUNTER_OBJ = join(ROOT, "bpf", "build", "test", "counter.bpf.o");
export const MAPS_OBJ = join(ROOT, "bpf", "build", "test", "maps.bpf.o");
export const BAD_VERIFIER_OBJ = join(ROOT, "bpf", "build", "test", "bad_verifier.bpf.o");
export const ADDON = join(ROOT, "native", "build", "nkit.node");
export const PIN_CHILD = join(ROOT, "test", "fixtures", "bpf", "attach-and-pin.mjs");

export function requireBuilt(): void {
  for (const p of [COUNTER_OBJ, MAPS_OBJ, BAD_VERIFIER_OBJ, ADDON]) {
    if (!existsSync(p)) throw new Error(`${p} is missing: run \`npm run build:native && npm run build:bpf\``);
  }
}

/** A fresh pin directory in bpffs (not created yet), removed with everything in it by the scope. */
export function scopedPinDir(scope: Scope, label: string): PinDir {
  const pins = new PinDir(uniqueBpffsDir(label));
  scope.defer(() => pins.removeAll());
  return pins;
}

export interface VethPair {
  ns: TestNetns;
  hostIf: string;
  hostIfindex: number;
  podIf: string;
  hostIp: string;
  podIp: string;
}

/** Bytes of one `ping -s 56` frame at a veth tc hook: 14 (Ethernet) + 20 (IPv4) + 8 (ICMP) + 56. */
export const PING_FRAME_BYTES = 98;

export async function createVethPair(scope: Scope): Promise<VethPair> {
  const ns = await createNetns(scope, "bpf");
  const hostIf = uniqueIfName("h");
  const podIf = uniqueIfName("p");
  await run("ip", ["link", "add", hostIf, "type", "veth", "peer", "name", podIf, "netns", ns.name]);
  scope.defer(async () => {
    // may already be gone with the netns
    await run("ip", ["link", "del", hostIf]).catch(() => undefined);
  });
  writeFileSync(`/proc/sys/net/ipv6/conf/${hostIf}/disable_ipv6`, "1");
  await inNetns(ns.path, "sysctl", ["-qw", `net.ipv6.conf.${podIf}.disable_ipv6=1`]);
  // a random /30 in 10.213.0.0/16 keeps concurrent runs apart
  const base = Math.floor(Math.random() * 16384) * 4;
  const hostIp = `10.213.${base >> 8}.${(base & 0xff) + 1}`;
  const podIp = `10.213.${base >> 8}.${(base & 0xff) + 2}`;
  await run("ip", ["addr", "add", `${hostIp}/30`, "dev", hostIf]);
  await run("ip", ["-n", ns.name, "addr", "add", `${podIp}/30`, "dev", podIf]);
  const [host] = await ipJson<{ ifindex: number; address: string }[]>(["link", "show", "dev", hostIf]);
  const [pod] = await ipJson<{ address: string }[]>(["link", "show", "dev", podIf], ns.name);
  if (!host || !pod) throw new Error("veth pair not found after creation");
  await run("ip", ["neigh", "replace", podIp, "lladdr", pod.address, "dev", hostIf, "nud", "permanent"]);
  await run("ip", [
    "-n",
    ns.name,
    "neigh",
    "replace",
    hostIp,
    "lladdr",
    host.address,
    "dev",
    podIf,
    "nud",
    "permanent",
  ]);
  await run("ip", ["link", "set", hostIf, "up"]);
  await run("ip", ["-n", ns.name, "link", "set", podIf, "up"]);
  return { ns, hostIf, hostIfindex: host.ifindex, podIf, hostIp, podIp };
}

/** count echo requests from the pod to the host end; all must be answered. */
export async function pingFromPod(pair: VethPair, count: number): Promise<void> {
  await inNetns(pair.ns.path, "ping", [
    "-q",
    "-n",
    "-c",
    String(count),
    "-i",
    "0.05",
    "-W",
    "2",
    "-s",
    "56",
    pair.hostIp,
  ]);
}

/** A bare veth pair in our netns (this kernel has no dummy driver); removed by the scope. */
export async function createDevice(scope: Scope): Promise<{ name: string; ifindex: number }> {
  const name = uniqueIfName("d");
  await run("ip", ["link", "add", name, "type", "veth", "peer", "name", uniqueIfName("e")]);
  scope.defer(() => run("ip", ["link", "del", name]));
  const [d] = await ipJson<{ ifindex: number }[]>(["link", "show", "dev", name]);
  if (!d) throw new Error(`veth ${name} not found after creation`);
  return { name, ifindex: d.ifindex };
}
