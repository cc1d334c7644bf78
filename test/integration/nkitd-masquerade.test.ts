// Masquerade through a live nkitd: pods reach "the world" (a netns behind the uplink that has no
// route to the pod CIDRs, so only a translated flow can get an answer) over TCP and UDP, v4 and v6,
// seen there as the uplink's address; nonMasqueradeCIDRs keep the pod's address; two pods sending
// from the same source port to the same remote get different translated ports and each gets its
// own reply; traffic to the host's own address is not translated, nor the answers to a connection
// another host opened to a pod directly.
import { randomInt } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NkitClient } from "../../src/api/client.js";
import { datapathObject } from "../../src/bpf/gen/datapath.skel.js";
import { pinnedMaps } from "../../src/bpf/skeleton.js";
import { Conntrack } from "../../src/conntrack/conntrack.js";
import { inCgroup } from "../helpers/cgroup.js";
import { createNetns, type TestNetns } from "../helpers/netns.js";
import {
  Nkitd,
  type NkitdSetup,
  nkit,
  nkitdSetup,
  nkitJson,
  outsideBehindUplink,
  requireDist,
  spawnProc,
  startNetFixture,
  until,
  watchMonitor,
} from "../helpers/nkitd.js";
import { Scope } from "../helpers/scope.js";
import { run } from "../helpers/sys.js";

const FIXTURES = join(import.meta.dirname, "..", "fixtures", "net");
const CLIENT = join(FIXTURES, "lb-client.mjs");
const UDP_FROM = join(FIXTURES, "udp-from-port.mjs");
const PEER = join(FIXTURES, "peer-echo.mjs");
const UDP_REFUSED = join(FIXTURES, "udp-refused.mjs");
const UDP_MANY = join(FIXTURES, "udp-many.mjs");
const BACKEND = join(FIXTURES, "lb-backend.mjs");
const WORLD_PORT = 9000;
// Tests whose flows must not meet earlier tests' live translations (same remote tuple) use their own
// remote port on the world: the pod-through-a-VIP test, the reload to 2 ports, the 100-port range.
const VIP_PORT = 9001;
const RELOAD_PORT = 9002;
const RANGE_PORT = 9003;

const scope = new Scope();
let setup: NkitdSetup;
let world: { name: string; path: string };
let api: NkitClient;
let daemon: Nkitd;
const pods: { ns: TestNetns; ipv4: string; ipv6: string }[] = [];
/** A remote network behind the world netns, listed in nonMasqueradeCIDRs. */
const kept4 = `10.${randomInt(100, 250)}.${randomInt(0, 255)}`;
let HOST4: string;
let HOST6: string;
let WORLD4: string;
let WORLD6: string;

const masqueradeLine = (range: string) =>
  `masquerade: {ipv6: true, nonMasqueradeCIDRs: [${kept4}.0/24], portRange: "${range}"}`;

interface TcpResult {
  answers: Record<string, number>;
  errors: Record<string, number>;
}

async function inPod<R>(pod: TestNetns, script: string, ...args: string[]): Promise<R> {
  const r = await run("nsenter", [`--net=${pod.path}`, "--", process.execPath, script, ...args], 60_000);
  return JSON.parse(r.stdout.trim()) as R;
}

beforeAll(async () => {
  requireDist();
  setup = await nkitdSetup(scope, "mq", [masqueradeLine("32768-65535")]);
  const o = await outsideBehindUplink(scope, setup, "world");
  world = o.netns;
  HOST4 = o.host4;
  HOST6 = o.host6;
  WORLD4 = o.far4;
  WORLD6 = o.far6;
  await run("ip", ["-n", world.name, "addr", "add", `${kept4}.2/32`, "dev", "lo"]);
  // Only the kept network may answer pods directly: the world routes the pod CIDR back for it.
  await run("ip", ["-n", world.name, "route", "add", setup.cidr4, "via", HOST4]);
  await run("ip", ["route", "add", `${kept4}.2/32`, "via", WORLD4, "dev", setup.uplink]);
  const peer = spawnProc(
    "nsenter",
    [`--net=${world.path}`, "--", process.execPath, PEER, String(WORLD_PORT)],
    scope,
  );
  await until(() => peer.out().includes("ready"), "the world's echo server", 10_000, peer.running);
  for (const port of [VIP_PORT, RELOAD_PORT, RANGE_PORT]) {
    const p = spawnProc(
      "nsenter",
      [`--net=${world.path}`, "--", process.execPath, PEER, String(port)],
      scope,
    );
    await until(() => p.out().includes("ready"), `the world's echo server on ${port}`, 10_000, p.running);
  }
  daemon = await Nkitd.start(scope, ["--config", setup.config]);
  api = new NkitClient(setup.socket);
  scope.defer(() => api.close());
  for (const name of ["pa", "pb"]) {
    const ns = await createNetns(scope, name);
    const ep = await api.wireEndpoint({ id: `mq-${name}-${process.pid}`, netnsPath: ns.path });
    scope.defer(() => api.unwireEndpoint(ep.id).catch(() => undefined));
    pods.push({ ns, ipv4: ep.addresses.ipv4, ipv6: ep.addresses.ipv6 });
  }
}, 120_000);

afterAll(async () => {
  await scope.close();
});

describe("masquerade through nkitd", () => {
  it("pods reach the world over TCP, v4 and v6, seen there as the uplink's address", async () => {
    const pod = pods[0]!.ns;
    const v4 = await inPod<TcpResult>(pod, CLIENT, "tcp", WORLD4, String(WORLD_PORT), "20");
    expect(v4.errors).toEqual({});
    expect(v4.answers).toEqual({ [HOST4]: 20 });
    const v6 = await inPod<TcpResult>(pod, CLIENT, "tcp", WORLD6, String(WORLD_PORT), "20");
    expect(v6.errors).toEqual({});
    expect(v6.answers).toEqual({ [HOST6]: 20 });
  });

  it("UDP replies come back; two pods on the same source port get different translated ports", async () => {
    const [a, b] = pods;
    const ra = await inPod<{ reply?: string; error?: string }>(
      a!.ns,
      UDP_FROM,
      WORLD4,
      String(WORLD_PORT),
      "40000",
    );
    const rb = await inPod<{ reply?: string; error?: string }>(
      b!.ns,
      UDP_FROM,
      WORLD4,
      String(WORLD_PORT),
      "40000",
    );
    const [addrA, portA] = (ra.reply ?? "").split(" ");
    const [addrB, portB] = (rb.reply ?? "").split(" ");
    expect([addrA, addrB]).toEqual([HOST4, HOST4]);
    expect(portA).toBe("40000"); // the pod's own port when it is free
    expect(portB).not.toBe(portA);
    expect(Number(portB)).toBeGreaterThanOrEqual(32768);
    const r6 = await inPod<{ reply?: string }>(a!.ns, UDP_FROM, WORLD6, String(WORLD_PORT), "40001");
    expect(r6.reply?.split(" ")[0]).toBe(HOST6);
    // `nkit nat list` shows both translations of port 40000.
    const flows = await nkitJson<{ protocol: string; pod: string; translated: string; remote: string }[]>(
      setup.socket,
      "nat",
      "list",
    );
    const udp = flows.filter((f) => f.protocol === "udp" && f.remote === `${WORLD4}:${WORLD_PORT}`);
    expect(udp.map((f) => f.pod).sort()).toEqual([`${a!.ipv4}:40000`, `${b!.ipv4}:40000`].sort());
    expect(udp.map((f) => f.translated).sort()).toEqual([`${HOST4}:${portA}`, `${HOST4}:${portB}`].sort());
  });

  it("translates ICMP echo: ping from a pod reaches the world over v4 and v6", async () => {
    const pod = pods[0]!;
    for (const target of [WORLD4, WORLD6]) {
      await run("nsenter", [`--net=${pod.ns.path}`, "--", "ping", "-c", "2", "-W", "2", "-i", "0.2", target]);
    }
    const flows = await nkitJson<{ protocol: string; translated: string; remote: string }[]>(
      setup.socket,
      "nat",
      "list",
    );
    expect(flows.some((f) => f.protocol === "icmp" && f.remote.startsWith(`${WORLD4}:`))).toBe(true);
    expect(flows.some((f) => f.protocol === "icmpv6" && f.translated.startsWith(`[${HOST6}]:`))).toBe(true);
  });

  it("delivers ICMP errors about translated flows to the pod: a closed port is refused, v4 and v6", async () => {
    const pod = pods[0]!.ns;
    for (const target of [WORLD4, WORLD6]) {
      const r = await inPod<{ error?: string }>(pod, UDP_REFUSED, target, "9999");
      expect(r, target).toEqual({ error: "ECONNREFUSED" });
    }
  });

  it("a TTL that expires in the world comes back to the pod as time exceeded (traceroute works)", async () => {
    const far = `10.${randomInt(100, 250)}.${randomInt(0, 255)}.77`;
    await run("ip", ["route", "add", `${far}/32`, "via", WORLD4, "dev", setup.uplink]);
    await run("ip", ["netns", "exec", world.name, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    await run("ip", ["-n", world.name, "route", "add", `${far}/32`, "via", HOST4]);
    // TTL 2: nkit's hop takes one, the world would have to forward it with 0 left.
    const r = await run("sh", [
      "-c",
      `nsenter --net=${pods[0]!.ns.path} -- ping -c 1 -t 2 -W 2 ${far}; true`,
    ]);
    expect(r.stdout).toMatch(new RegExp(`From ${WORLD4.replaceAll(".", "\\.")}.*Time to live exceeded`));
  });

  it("keeps the pod's address for nonMasqueradeCIDRs and for the host's own addresses", async () => {
    const pod = pods[0]!;
    const kept = await inPod<TcpResult>(pod.ns, CLIENT, "tcp", `${kept4}.2`, String(WORLD_PORT), "5");
    expect(kept.errors).toEqual({});
    expect(kept.answers).toEqual({ [pod.ipv4]: 5 });
    const seen: string[] = [];
    const server: Server = createServer((s) => {
      seen.push(s.remoteAddress ?? "");
      s.end("host");
    });
    const port = randomInt(20000, 30000);
    await new Promise<void>((r) => server.listen(port, HOST4, r));
    scope.defer(() => new Promise((r) => server.close(r)));
    const r = await inPod<TcpResult>(pod.ns, CLIENT, "tcp", HOST4, String(port), "3");
    expect(r.answers).toEqual({ host: 3 });
    expect([...new Set(seen)]).toEqual([pod.ipv4]);
  });

  it("leaves the host's connections to a pod untranslated both ways", async () => {
    const pod = pods[0]!;
    const port = randomInt(20000, 30000);
    const peer = await startNetFixture(scope, pod.ns.path, "peer-echo.mjs", [String(port)]);
    const r = await run(process.execPath, [CLIENT, "tcp", pod.ipv4, String(port), "3"], 30_000);
    const seen = JSON.parse(r.stdout.trim()) as TcpResult & { peers: string[] };
    expect(seen.errors).toEqual({});
    expect(seen.peers).toEqual([pod.ipv4]);
    const [source] = Object.keys(seen.answers);
    const host = JSON.parse((await run("ip", ["-j", "addr", "show"])).stdout) as {
      addr_info: { local: string }[];
    }[];
    expect(host.flatMap((l) => l.addr_info.map((a) => a.local))).toContain(source);
    peer.child.kill();
  });

  it("answers a connection another host opened to a pod directly from the pod's own address", async () => {
    // The world routes the pod CIDR to this host (as another nkit node does): the pod's SYN-ACK is
    // part of a flow that came in untranslated and must leave so (it used to get the uplink's address).
    const pod = pods[0]!;
    const port = randomInt(20000, 30000);
    const peer = await startNetFixture(scope, pod.ns.path, "peer-echo.mjs", [String(port)]);
    const r = await run(
      "nsenter",
      [`--net=${world.path}`, "--", process.execPath, CLIENT, "tcp", pod.ipv4, String(port), "3"],
      30_000,
    );
    const seen = JSON.parse(r.stdout.trim()) as TcpResult & { peers: string[] };
    expect(seen.errors).toEqual({});
    expect(seen.peers).toEqual([pod.ipv4]);
    expect(seen.answers).toEqual({ [WORLD4]: 3 });
    peer.child.kill();
  });

  it("masquerades a pod's connection through a VIP to a backend outside the host (TCP and UDP)", async () => {
    const vip = "10.96.75.10";
    const add = await nkit(
      setup.socket,
      "service",
      "add",
      "world",
      "--vip",
      `${vip}:80/tcp->${VIP_PORT}`,
      "--vip",
      `${vip}:53/udp->${VIP_PORT}`,
      "--backend",
      WORLD4,
    );
    expect(add.code, add.stderr).toBe(0);
    const pod = pods[0]!;
    // The pod's client runs in the load-balancer's cgroup, as every process of a real pod does.
    const inLb = async <R>(...args: string[]): Promise<R> =>
      JSON.parse(
        (await inCgroup(setup.cgroup, pod.ns.path, process.execPath, args, 30_000)).stdout.trim(),
      ) as R;
    const tcp = await inLb<TcpResult & { peers: string[] }>(CLIENT, "tcp", vip, "80", "3");
    expect(tcp.errors).toEqual({});
    expect(tcp.answers).toEqual({ [HOST4]: 3 });
    expect(tcp.peers).toEqual([vip]);
    const udp = await inLb<{ reply: string; from: string; fromPort: number }>(CLIENT, "udp", vip, "53");
    expect(udp.reply.split(" ")[0]).toBe(HOST4);
    expect([udp.from, udp.fromPort]).toEqual([vip, 53]);
    expect((await nkit(setup.socket, "service", "delete", "world")).code).toBe(0);
  });

  it("path MTU: a smaller-MTU hop beyond the world reaches the pod as fragmentation needed / packet too big", async () => {
    const net4 = `10.${randomInt(100, 250)}.${randomInt(0, 255)}`;
    const net6 = `fd${randomInt(16, 255).toString(16)}:${randomInt(1, 0xffff).toString(16)}:5`;
    const far = await createNetns(scope, "far");
    const dev = `${setup.uplink}m`;
    await run("ip", [
      "-n",
      world.name,
      "link",
      "add",
      dev,
      "mtu",
      "1280",
      "type",
      "veth",
      "peer",
      "name",
      "eth0",
      "netns",
      far.name,
    ]);
    await run("ip", ["-n", far.name, "link", "set", "eth0", "mtu", "1280"]);
    await run("ip", ["-n", world.name, "addr", "add", `${net4}.1/24`, "dev", dev]);
    await run("ip", ["-n", world.name, "addr", "add", `${net6}::1/64`, "dev", dev, "nodad"]);
    await run("ip", ["-n", world.name, "link", "set", dev, "up"]);
    await run("ip", ["-n", far.name, "addr", "add", `${net4}.2/24`, "dev", "eth0"]);
    await run("ip", ["-n", far.name, "addr", "add", `${net6}::2/64`, "dev", "eth0", "nodad"]);
    await run("ip", ["-n", far.name, "link", "set", "eth0", "up"]);
    await run("ip", ["-n", far.name, "route", "add", "default", "via", `${net4}.1`]);
    await run("ip", ["-n", far.name, "-6", "route", "add", "default", "via", `${net6}::1`]);
    await run("ip", ["netns", "exec", world.name, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    await run("ip", ["netns", "exec", world.name, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    await run("ip", ["route", "add", `${net4}.0/24`, "via", WORLD4, "dev", setup.uplink]);
    await run("ip", ["-6", "route", "add", `${net6}::/64`, "via", WORLD6, "dev", setup.uplink]);
    const ping = async (...args: string[]) =>
      (await run("sh", ["-c", `nsenter --net=${pods[0]!.ns.path} -- ping ${args.join(" ")} 2>&1; true`]))
        .stdout;
    // Small packets pass (the path works), 1400-byte ones with DF learn the hop's MTU.
    expect(await ping("-c", "1", "-W", "2", `${net4}.2`)).toMatch(/1 received/);
    const v4 = await ping("-c", "3", "-i", "0.3", "-W", "2", "-M", "do", "-s", "1400", `${net4}.2`);
    expect(v4).toMatch(/mtu ?= ?1280/);
    const v6 = await ping("-6", "-c", "3", "-i", "0.3", "-W", "2", "-M", "do", "-s", "1400", `${net6}::2`);
    expect(v6).toMatch(/mtu[=: ]+1280/i);
  });

  it("collects closed TCP flows after the closing timeout and keeps live UDP ones", async () => {
    const tcpToWorld = (flows: { protocol: string; remote: string }[]) =>
      flows.filter((f) => f.protocol === "tcp" && f.remote === `${WORLD4}:${WORLD_PORT}`);
    const before = await nkitJson<{ protocol: string; remote: string }[]>(setup.socket, "nat", "list");
    expect(tcpToWorld(before)).toHaveLength(20);
    // The collector nkitd runs every 30 s, run now as if 11 s had passed (closing timeout: 10 s).
    const ct = Conntrack.open(pinnedMaps(setup.bpffsDir, datapathObject));
    try {
      expect(ct.collect(process.hrtime.bigint() + 11_000_000_000n)).toBeGreaterThanOrEqual(40);
    } finally {
      ct.close();
    }
    const after = await nkitJson<{ protocol: string; remote: string }[]>(setup.socket, "nat", "list");
    expect(tcpToWorld(after)).toEqual([]);
    expect(after.filter((f) => f.protocol === "udp").length).toBeGreaterThanOrEqual(2);
  });

  it("5,000 concurrent UDP flows from 5 pods to one remote get 5,000 distinct translated ports", async () => {
    for (const name of ["pc", "pd", "pe"]) {
      const ns = await createNetns(scope, name);
      const ep = await api.wireEndpoint({ id: `mq-${name}-${process.pid}`, netnsPath: ns.path });
      scope.defer(() => api.unwireEndpoint(ep.id).catch(() => undefined));
      pods.push({ ns, ipv4: ep.addresses.ipv4, ipv6: ep.addresses.ipv6 });
    }
    const runs = await Promise.all(
      pods
        .slice(0, 5)
        .map((p) =>
          inPod<{ answered: number; seen: string[] }>(p.ns, UDP_MANY, WORLD4, String(WORLD_PORT), "1000"),
        ),
    );
    expect(runs.map((r) => r.answered)).toEqual([1000, 1000, 1000, 1000, 1000]);
    const seen = runs.flatMap((r) => r.seen);
    expect(new Set(seen.map((x) => x.split(" ")[0]))).toEqual(new Set([HOST4]));
    expect(new Set(seen).size).toBe(5000);
  }, 120_000);

  it("established translated flows survive an nkitd restart", async () => {
    const backend = spawnProc(
      "nsenter",
      [`--net=${world.path}`, "--", process.execPath, BACKEND, "world", "8080"],
      scope,
    );
    await until(() => backend.out().includes("ready"), "the world's live server", 10_000, backend.running);
    const live = spawnProc(
      "nsenter",
      [`--net=${pods[0]!.ns.path}`, "--", process.execPath, CLIENT, "live", WORLD4, "8081", "20,4000"],
      scope,
    );
    await until(() => live.out().includes("open"), "20 live connections", 15_000, live.running);
    expect((await daemon.stop()).code).toBe(0);
    daemon = await Nkitd.start(scope, ["--config", setup.config]);
    const done = await live.done;
    const held = JSON.parse(done.stdout.split("\n")[1] ?? "{}") as TcpResult;
    expect(held.errors).toEqual({});
    expect(held.answers).toEqual({ world: 20 });
  }, 60_000);

  it("reload (SIGHUP) applies a 2-port range; exhausting it drops with a counted reason, nothing crashes", async () => {
    const text = readFileSync(setup.config, "utf8").replace(
      masqueradeLine("32768-65535"),
      masqueradeLine("40000-40001"),
    );
    writeFileSync(setup.config, text);
    process.kill(daemon.pid, "SIGHUP");
    await until(() => daemon.logs().some((l) => l.msg === "config reloaded"), "the reload", 10_000);
    const pod = pods[0]!;
    const results = [];
    for (const local of ["41000", "41001", "41002"]) {
      results.push(
        await inPod<{ reply?: string; error?: string }>(pod.ns, UDP_FROM, WORLD4, String(RELOAD_PORT), local),
      );
    }
    const ports = results.filter((r) => r.reply).map((r) => r.reply?.split(" ")[1]);
    for (const p of ports) expect(["40000", "40001"]).toContain(p);
    expect(results.filter((r) => r.error === "TIMEOUT").length).toBeGreaterThan(0);
    const ep = await nkitJson<{ counters: { reason: string; packets: number }[] }>(
      setup.socket,
      "endpoint",
      "get",
      `mq-pa-${process.pid}`,
    );
    expect(ep.counters.find((c) => c.reason === "DROP_NAT_NO_PORT")?.packets ?? 0).toBeGreaterThan(0);
    // A bad config is refused and the running one kept.
    writeFileSync(setup.config, text.replace('portRange: "40000-40001"', 'portRange: "1-2"'));
    process.kill(daemon.pid, "SIGHUP");
    await until(
      () => daemon.logs().some((l) => l.msg.startsWith("reload refused")),
      "the refused reload",
      10_000,
    );
    expect(daemon.logs().find((l) => l.msg.startsWith("reload refused"))?.key).toBe("masquerade.portRange");
    const still = await inPod<TcpResult>(pod.ns, CLIENT, "tcp", `${kept4}.2`, String(WORLD_PORT), "1");
    expect(still.errors).toEqual({});
  });

  it("a 100-port range is exhausted by 100 flows, more are dropped and counted, and new flows work once those expire", async () => {
    const UDP_IDLE = 8;
    writeFileSync(
      setup.config,
      `${readFileSync(setup.config, "utf8")
        .split("\n")
        .filter((l) => !l.startsWith("masquerade:") && !l.startsWith("timeouts:"))
        .join("\n")}\n${masqueradeLine("41000-41099")}\ntimeouts: {udp: ${UDP_IDLE}}\n`,
    );
    const reloads = () => daemon.logs().filter((l) => l.msg === "config reloaded").length;
    const before = reloads();
    process.kill(daemon.pid, "SIGHUP");
    await until(() => reloads() > before, "the reload", 10_000);
    const pod = pods[1]!;
    const drops = async () => {
      const ep = await nkitJson<{ counters: { reason: string; packets: number }[] }>(
        setup.socket,
        "endpoint",
        "get",
        `mq-pb-${process.pid}`,
      );
      return ep.counters.find((c) => c.reason === "DROP_NAT_NO_PORT")?.packets ?? 0;
    };
    const dropsBefore = await drops();
    const mon = await watchMonitor(setup.socket, ["DROP_NAT_NO_PORT"], 1, 10_000);
    const started = Date.now();
    // From the range's own ports, which masquerade keeps when free: each flow claims its own.
    const first = await inPod<{ answered: number; seen: string[] }>(
      pod.ns,
      UDP_MANY,
      WORLD4,
      String(RANGE_PORT),
      "100",
      "41000",
    );
    expect(first.answered).toBe(100);
    const ports = new Set(first.seen.map((x) => Number(x.split(" ")[1])));
    expect(ports.size).toBe(100);
    for (const p of ports) expect(p >= 41000 && p <= 41099, String(p)).toBe(true);
    // Every port is held by a live flow: new flows get none. (Fixed source ports outside the range:
    // an ephemeral one could repeat a live flow's tuple, which rightly keeps its translation.)
    const more = await inPod<{ answered: number }>(
      pod.ns,
      UDP_MANY,
      WORLD4,
      String(RANGE_PORT),
      "10",
      "42000",
    );
    expect(Date.now() - started, "the second batch ran before the first expired").toBeLessThan(
      UDP_IDLE * 1000,
    );
    expect(more.answered).toBe(0);
    expect(await drops()).toBeGreaterThan(dropsBefore);
    expect((await mon.events())[0]).toMatchObject({
      type: "drop",
      reason: "DROP_NAT_NO_PORT",
      src: pod.ipv4,
      dst: WORLD4,
      protocol: 17,
    });
    // Once the first flows have been idle past timeouts.udp their ports are free again.
    await new Promise((r) => setTimeout(r, Math.max(0, started + (UDP_IDLE + 1) * 1000 - Date.now())));
    const later = await inPod<{ answered: number; seen: string[] }>(
      pod.ns,
      UDP_MANY,
      WORLD4,
      String(RANGE_PORT),
      "10",
      "42100",
    );
    expect(later.answered).toBe(10);
    for (const x of later.seen) {
      const port = Number(x.split(" ")[1]);
      expect(port >= 41000 && port <= 41099, String(port)).toBe(true);
    }
  }, 60_000);
});
