// Host ports (CNI portMappings) through a live nkitd, reached the five ways users reach them: from
// another host (a netns behind the uplink: per-packet DNAT at tc, Maglev choice, reverse NAT on
// the pod's replies), from another pod, from the pod itself (hairpin), and from the host via its own
// address and via 127.0.0.1 / ::1 (socket hooks); TCP and UDP, IPv4 and IPv6. The mapping is sent
// the way containerd's go-cni sends it (Go field names), through the real nkit-cni binary.
import { randomInt } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { inCgroup } from "../helpers/cgroup.js";
import { runShim, runShimWithPorts } from "../helpers/cni.js";
import { uniqueNetnsName } from "../helpers/names.js";
import { createNetns, type TestNetns } from "../helpers/netns.js";
import {
  maglevEntries,
  Nkitd,
  type NkitdSetup,
  nkitdSetup,
  nkitJson,
  outsideBehindUplink,
  requireDist,
  startNetFixture,
} from "../helpers/nkitd.js";
import { Scope } from "../helpers/scope.js";
import { run } from "../helpers/sys.js";

const FIXTURES = join(import.meta.dirname, "..", "fixtures", "net");
const CLIENT = join(FIXTURES, "lb-client.mjs");
const HOST_PORT = randomInt(20000, 30000);
const CONTAINER_PORT = 8080;

const scope = new Scope();
let setup: NkitdSetup;
let daemon: Nkitd;
let outside: TestNetns;
let podA: TestNetns;
let podB: TestNetns;
let socket: string;
let HOST4: string;
let HOST6: string;
const idA = `hp-a-${process.pid}`;
const idB = `hp-b-${process.pid}`;

interface TcpResult {
  answers: Record<string, number>;
  errors: Record<string, number>;
  peers: string[];
}

// TCP as nerdctl sends `-p H:C` (HostIP "0.0.0.0": every address, both families), UDP as
// containerd's CRI sends a hostPort (HostIP ""): both must reach every host address and loopback.
const portMappings = (hostPort: number) => [
  { HostPort: hostPort, ContainerPort: CONTAINER_PORT, Protocol: "tcp", HostIP: "0.0.0.0" },
  { HostPort: hostPort, ContainerPort: CONTAINER_PORT, Protocol: "udp", HostIP: "" },
];

const cni = (command: string, id: string, netns: string | undefined, hostPort = HOST_PORT) =>
  runShimWithPorts(command, {
    socket,
    containerId: id,
    ...(netns ? { netns } : {}),
    portMappings: portMappings(hostPort),
  });

async function fromOutside<R>(...args: string[]): Promise<R> {
  const r = await run("nsenter", [`--net=${outside.path}`, "--", process.execPath, CLIENT, ...args], 60_000);
  return JSON.parse(r.stdout.trim()) as R;
}

async function inHostCgroup<R>(netns: string | undefined, ...args: string[]): Promise<R> {
  const r = await inCgroup(setup.cgroup, netns, process.execPath, [CLIENT, ...args], 60_000);
  return JSON.parse(r.stdout.trim()) as R;
}

beforeAll(async () => {
  requireDist();
  setup = await nkitdSetup(scope, "hp");
  socket = join(setup.runDir, "cni.sock");
  // The uplink's far end is "another host".
  const o = await outsideBehindUplink(scope, setup, "out");
  outside = o.netns;
  HOST4 = o.host4;
  HOST6 = o.host6;
  daemon = await Nkitd.start(scope, ["--config", setup.config]);
  podA = await createNetns(scope, "hpa");
  podB = await createNetns(scope, "hpb");
  const add = await cni("ADD", idA, podA.path);
  expect(add.code, add.stdout).toBe(0);
  scope.defer(() => cni("DEL", idA, podA.path));
  const addB = await runShim("ADD", {
    socket,
    containerId: idB,
    netns: podB.path,
    args: "IgnoreUnknown=1",
    conf: { cniVersion: "1.0.0", name: "nkit", mode: "wire" },
  });
  expect(addB.code, addB.stdout).toBe(0);
  scope.defer(() => runShim("DEL", { socket, containerId: idB, netns: podB.path, args: "IgnoreUnknown=1" }));
  await startNetFixture(scope, podA.path, "lb-backend.mjs", ["pa", String(CONTAINER_PORT)]);
}, 120_000);

afterAll(async () => {
  await scope.close();
});

describe("host ports through nkitd", () => {
  it("lists the container's host ports as services on the host's addresses and loopback", async () => {
    const list = await nkitJson<{ name: string; source: string; frontends: { frontend: string }[] }[]>(
      setup.socket,
      "service",
      "list",
    );
    const frontends = list
      .filter((s) => s.source === "host-port")
      .flatMap((s) => s.frontends.map((f) => f.frontend));
    for (const f of [
      `${HOST4}:${HOST_PORT}/tcp`,
      `[${HOST6}]:${HOST_PORT}/tcp`,
      `127.0.0.1:${HOST_PORT}/tcp`,
      `[::1]:${HOST_PORT}/udp`,
    ]) {
      expect(frontends).toContain(f);
    }
  });

  it("needs no Maglev table: a frontend of one backend is served from slot 0", async () => {
    // Installing a table costs an RCU grace period per frontend (tcp and udp on every host address).
    expect(await maglevEntries(setup.bpffsDir)).toEqual([]);
  });

  it("is reachable from another host over TCP and UDP, v4 and v6, answered from the host's address", async () => {
    for (const host of [HOST4, HOST6]) {
      const tcp = await fromOutside<TcpResult>("tcp", host, String(HOST_PORT), "20");
      expect(tcp.errors, host).toEqual({});
      expect(tcp.answers, host).toEqual({ pa: 20 });
      expect(tcp.peers, host).toEqual([host]);
      const udp = await fromOutside<{ reply: string; from: string; fromPort: number }>(
        "udp",
        host,
        String(HOST_PORT),
      );
      expect(udp.reply, host).toBe("pa:ping");
      expect(udp.from, host).toBe(host);
      expect(udp.fromPort, host).toBe(HOST_PORT);
    }
    // Per-packet flows are counted against the backend; the loopback frontends stay socket-only.
    const list = await nkitJson<
      {
        source: string;
        frontends: { frontend: string; external: boolean; connections: Record<string, number> }[];
      }[]
    >(setup.socket, "service", "list");
    const frontends = list.filter((s) => s.source === "host-port").flatMap((s) => s.frontends);
    const v4 = frontends.find((f) => f.frontend === `${HOST4}:${HOST_PORT}/tcp`);
    expect(v4?.external).toBe(true);
    expect(Object.values(v4?.connections ?? {})[0]).toBeGreaterThanOrEqual(20);
    expect(frontends.find((f) => f.frontend === `127.0.0.1:${HOST_PORT}/tcp`)?.external).toBe(false);
  });

  it("is reachable from the host via its own address, 127.0.0.1 and ::1, from another pod and from the pod itself", async () => {
    const ways: [string, string | undefined, string][] = [
      ["host via its address", undefined, HOST4],
      ["host via 127.0.0.1", undefined, "127.0.0.1"],
      ["host via ::1", undefined, "::1"],
      ["another pod", podB.path, HOST6],
      ["the pod itself (hairpin)", podA.path, HOST4],
    ];
    for (const [what, netns, host] of ways) {
      const r = await inHostCgroup<TcpResult>(netns, "tcp", host, String(HOST_PORT), "5");
      expect(r.errors, what).toEqual({});
      expect(r.answers, what).toEqual({ pa: 5 });
    }
  });

  it("refuses the same host port for a second container, naming the holder", async () => {
    const c = await createNetns(scope, "hpc");
    const id = `hp-c-${process.pid}`;
    const r = await cni("ADD", id, c.path);
    expect(r.code).not.toBe(0);
    expect(JSON.stringify(r.json)).toContain(idA);
    await cni("DEL", id, c.path);
  });

  it("survives an nkitd restart: answered while nkitd is down and after it is back, every way", async () => {
    await daemon.stop();
    const down = await inHostCgroup<TcpResult>(undefined, "tcp", "127.0.0.1", String(HOST_PORT), "3");
    expect(down.errors, "while nkitd is down").toEqual({});
    daemon = await Nkitd.start(scope, ["--config", setup.config]);
    expect(daemon.log("host ports restored")).toMatchObject({ containers: 1 });
    for (const [netns, host] of [
      [undefined, "127.0.0.1"],
      [undefined, "::1"],
      [undefined, HOST4],
      [podB.path, HOST6],
    ] as const) {
      const r = await inHostCgroup<TcpResult>(netns, "tcp", host, String(HOST_PORT), "3");
      expect(r.errors, `${host} after the restart`).toEqual({});
      expect(r.answers, host).toEqual({ pa: 3 });
    }
    for (const host of [HOST4, HOST6]) {
      const tcp = await fromOutside<TcpResult>("tcp", host, String(HOST_PORT), "3");
      expect(tcp.errors, `${host} from outside after the restart`).toEqual({});
      const udp = await fromOutside<{ reply: string }>("udp", host, String(HOST_PORT));
      expect(udp.reply, host).toBe("pa:ping");
    }
    expect(daemon.logs().filter((l) => l.level >= 50)).toEqual([]);
  });

  it("releases the host ports, addresses and attachment of a container that went away while nkitd was down", async () => {
    const id = `hp-gone-${process.pid}`;
    const port = HOST_PORT + 1;
    const name = uniqueNetnsName("hpg");
    await run("ip", ["netns", "add", name]);
    scope.defer(() => run("ip", ["netns", "del", name]).catch(() => undefined));
    const add = await cni("ADD", id, `/run/netns/${name}`, port);
    expect(add.code, add.stdout).toBe(0);
    const before = (await nkitJson<{ name: string }[]>(setup.socket, "service", "list")).map((s) => s.name);
    expect(before.filter((n) => n.startsWith(`hostport.tcp.${port}.`)).length).toBeGreaterThan(0);

    await daemon.stop();
    // The container's netns goes (the kernel removes its device pair with it) and its DEL never comes.
    await run("ip", ["netns", "del", name]);
    daemon = await Nkitd.start(scope, ["--config", setup.config]);

    const after = (await nkitJson<{ name: string }[]>(setup.socket, "service", "list")).map((s) => s.name);
    expect(after.filter((n) => n.startsWith(`hostport.tcp.${port}.`))).toEqual([]);
    // pod A's ports were restored next to it (other tests' uplink addresses come and go meanwhile)
    for (const proto of ["tcp", "udp"])
      for (const a of [HOST4, HOST6, "127.0.0.1", "::1"])
        expect(after).toContain(`hostport.${proto}.${HOST_PORT}.${a.replaceAll(":", "-")}`);
    const records = (sub: string) =>
      readdirSync(join(setup.stateDir, sub))
        .filter((n) => n.endsWith(".json"))
        .map((n) => readFileSync(join(setup.stateDir, sub, n), "utf8"));
    const attachments = records("cni-attachments").map(
      (t) => (JSON.parse(t) as { containerId: string }).containerId,
    );
    expect(attachments.sort()).toEqual([idA, idB].sort());
    for (const allocation of records("ipam")) expect(allocation).not.toContain(id);
    const r = await inHostCgroup<TcpResult>(undefined, "tcp", "127.0.0.1", String(port), "1");
    expect(r.errors).toEqual({ ECONNREFUSED: 1 });
    expect(daemon.logs().filter((l) => l.level >= 50)).toEqual([]);
  });

  it("goes away on CNI DEL: no host-port service left, the port is closed from outside", async () => {
    const del = await cni("DEL", idA, podA.path);
    expect(del.code, del.stdout).toBe(0);
    const list = await nkitJson<{ source: string }[]>(setup.socket, "service", "list");
    expect(list.filter((s) => s.source === "host-port")).toEqual([]);
    expect(await maglevEntries(setup.bpffsDir)).toEqual([]);
    const tcp = await fromOutside<TcpResult>("tcp", HOST4, String(HOST_PORT), "1");
    expect(tcp.errors).toEqual({ ECONNREFUSED: 1 });
    expect(daemon.logs().filter((l) => l.level >= 50)).toEqual([]);
  });
});
