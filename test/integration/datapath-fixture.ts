// Shared setup for EndpointManager tests: a manager with its own bpffs dir, state dir and pod
// CIDRs, throwaway pod netns, an "outside" netns behind an uplink veth, and traffic helpers.
import { type ChildProcess, spawn } from "node:child_process";
import { randomInt } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PinDir } from "../../src/bpf/pins.js";
import { EndpointManager, type EndpointManagerOptions } from "../../src/datapath/endpoint-manager.js";
import { hostIfName } from "../../src/datapath/naming.js";
import { Ipam } from "../../src/ipam/ipam.js";
import { Rtnl } from "../../src/netlink/index.js";
import { RUN_ID, uniqueBpffsDir, uniqueIfName } from "../helpers/names.js";
import { createNetns, type TestNetns } from "../helpers/netns.js";
import type { Scope } from "../helpers/scope.js";
import { inNetns, run } from "../helpers/sys.js";

export const ECHO = join(import.meta.dirname, "..", "fixtures", "net", "echo.mjs");

export interface Harness {
  mgr: EndpointManager;
  ipam: Ipam;
  cidr4: string;
  cidr6: string;
  bpffsDir: string;
  stateDir: string;
  /** Endpoint ids this harness may have wired (for the leak check). */
  ids: Set<string>;
  newId(label: string): string;
}

export function podCidrs(v4Prefix = 24): { cidr4: string; cidr6: string } {
  return {
    cidr4: `10.${randomInt(100, 250)}.${randomInt(0, 255)}.0/${v4Prefix}`,
    cidr6: `fd${randomInt(16, 255).toString(16)}:${randomInt(1, 0xffff).toString(16)}::/64`,
  };
}

export async function createHarness(
  scope: Scope,
  opts: Partial<EndpointManagerOptions> & { v4Prefix?: number; cidrs?: string[] } = {},
): Promise<Harness> {
  const { cidr4, cidr6 } = podCidrs(opts.v4Prefix);
  const stateDir = mkdtempSync(join(tmpdir(), "nkit-dp-"));
  scope.defer(() => rmSync(stateDir, { recursive: true, force: true }));
  const bpffsDir = uniqueBpffsDir("dp");
  scope.defer(() => new PinDir(bpffsDir).removeAll());
  const ipam = Ipam.open({ podCIDRs: opts.cidrs ?? [cidr4, cidr6], statePath: join(stateDir, "ipam.json") });
  const ids = new Set<string>();
  // Leak check runs after the manager's cleanup (Scope runs in reverse order).
  scope.defer(() => assertNoEndpointDevices(ids));
  const { v4Prefix: _p, cidrs: _c, ...mgrOpts } = opts;
  const mgr = await EndpointManager.start({ mode: "veth", bpffsDir, stateDir, ipam, ...mgrOpts });
  scope.defer(async () => {
    for (const ep of mgr.list()) await mgr.unwire(ep.id);
    await mgr.close();
  });
  let n = 0;
  return {
    mgr,
    ipam,
    cidr4,
    cidr6,
    bpffsDir,
    stateDir,
    ids,
    newId: (label) => {
      const id = `nkt-${RUN_ID}-${label}-${process.pid}-${n++}-${randomInt(1e9)}`;
      ids.add(id);
      return id;
    },
  };
}

export async function assertNoEndpointDevices(ids: Iterable<string>): Promise<void> {
  const host = await Rtnl.host();
  try {
    const left: string[] = [];
    for (const id of ids) {
      const name = hostIfName(id);
      if (await host.getLink(name)) {
        left.push(name);
        await host.deleteLink(name);
      }
    }
    if (left.length) throw new Error(`endpoint devices leaked (now removed): ${left.join(", ")}`);
  } finally {
    await host.close();
  }
}

export async function createPod(scope: Scope, label = "pod"): Promise<TestNetns> {
  return createNetns(scope, label);
}

export async function ping(ns: TestNetns, addr: string, count = 2): Promise<boolean> {
  try {
    await inNetns(ns.path, "ping", ["-c", String(count), "-i", "0.2", "-W", "2", "-q", addr]);
    return true;
  } catch {
    return false;
  }
}

export async function startEcho(scope: Scope, ns: TestNetns | undefined, addr: string, port: number) {
  const argv = ns
    ? ["nsenter", `--net=${ns.path}`, "--", process.execPath, ECHO, "serve", addr, String(port)]
    : [process.execPath, ECHO, "serve", addr, String(port)];
  const child: ChildProcess = spawn(argv[0]!, argv.slice(1), { stdio: ["ignore", "pipe", "inherit"] });
  scope.defer(() => {
    child.kill("SIGKILL");
  });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("echo server did not start")), 10_000);
    child.stdout?.on("data", (d: Buffer) => {
      if (d.toString().includes("ready")) {
        clearTimeout(t);
        resolve();
      }
    });
    child.once("exit", (c) => reject(new Error(`echo server exited with ${c}`)));
  });
}

/** TCP + UDP round trip from inside ns (or the host) to addr:port. */
export async function probeEcho(ns: TestNetns | undefined, addr: string, port: number): Promise<void> {
  if (ns) await inNetns(ns.path, process.execPath, [ECHO, "probe", addr, String(port)]);
  else await run(process.execPath, [ECHO, "probe", addr, String(port)]);
}

export interface Outside {
  ns: TestNetns;
  uplink: string;
  hostV4: string;
  outsideV4: string;
  hostV6: string;
  outsideV6: string;
}

/** An "outside" netns behind an uplink veth, routing the pod CIDRs back through the host. */
export async function createOutside(scope: Scope, h: Harness): Promise<Outside> {
  const ns = await createNetns(scope, "outside");
  const uplink = uniqueIfName("up");
  const a = randomInt(0, 255);
  const hostV4 = `198.18.${a}.1`;
  const outsideV4 = `198.18.${a}.2`;
  const p6 = `2001:db8:${randomInt(1, 0xffff).toString(16)}`;
  const hostV6 = `${p6}::1`;
  const outsideV6 = `${p6}::2`;
  await run("ip", ["link", "add", uplink, "type", "veth", "peer", "name", "eth0", "netns", ns.name]);
  scope.defer(() => run("ip", ["link", "del", uplink]).catch(() => undefined));
  await run("ip", ["addr", "add", `${hostV4}/24`, "dev", uplink]);
  await run("ip", ["addr", "add", `${hostV6}/64`, "dev", uplink, "nodad"]);
  await run("ip", ["link", "set", uplink, "up"]);
  await run("ip", ["-n", ns.name, "addr", "add", `${outsideV4}/24`, "dev", "eth0"]);
  await run("ip", ["-n", ns.name, "addr", "add", `${outsideV6}/64`, "dev", "eth0", "nodad"]);
  await run("ip", ["-n", ns.name, "link", "set", "eth0", "up"]);
  await run("ip", ["-n", ns.name, "route", "add", h.cidr4, "via", hostV4]);
  await run("ip", ["-n", ns.name, "route", "add", h.cidr6, "via", hostV6]);
  await h.mgr.attachUplink(uplink);
  scope.defer(() => h.mgr.detachUplink(uplink));
  return { ns, uplink, hostV4, outsideV4, hostV6, outsideV6 };
}
