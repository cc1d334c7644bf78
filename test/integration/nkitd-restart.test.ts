// nkitd restarts under live traffic: two pods wired through the admin API keep talking while the
// daemon stops (SIGTERM) and a new one starts on the same dirs and adopts them. An IPv4 ping at
// 500 packets/s one way, an IPv6 ping the other way and one long-lived TCP connection (sequenced
// messages every 5 ms, every echo checked) must lose nothing, and the new nkitd lists both
// endpoints on the same host devices.

import { randomInt } from "node:crypto";
import { join } from "node:path";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { NkitClient } from "../../src/api/client.js";
import type * as T from "../../src/api/types.js";
import { hostIfName } from "../../src/datapath/naming.js";
import { runShim, runShimWithPorts } from "../helpers/cni.js";
import { RUN_ID } from "../helpers/names.js";
import { createNetns, type TestNetns } from "../helpers/netns.js";
import {
  deleteLinks,
  endpointFilters,
  Nkitd,
  nkit,
  nkitdSetup,
  nkitJson,
  outsideBehindUplink,
  type Proc,
  pinnedLink,
  presentLinks,
  requireDist,
  spawnProc,
  until,
} from "../helpers/nkitd.js";
import { waitFor } from "../helpers/process.js";
import { Scope } from "../helpers/scope.js";
import { inNetns, ipJson } from "../helpers/sys.js";

const STREAM = join(import.meta.dirname, "..", "fixtures", "net", "tcp-stream.mjs");
/** Ping: PING_COUNT packets PING_INTERVAL apart; must outlast the restart (checked below). */
const PING_COUNT = 4000;
const PING_INTERVAL = "0.002";

let scope: Scope;
beforeAll(() => requireDist());
beforeEach(() => {
  scope = new Scope();
});
afterEach(() => scope.close());

function inPod(pod: TestNetns, cmd: string, args: readonly string[]): Proc {
  return spawnProc("nsenter", [`--net=${pod.path}`, "--", cmd, ...args], scope);
}

interface PingResult {
  transmitted: number;
  received: number;
  loss: string;
}

function parsePing(out: string): PingResult {
  const m = /(\d+) packets transmitted, (\d+) received,.*?([\d.]+)% packet loss/.exec(out);
  if (!m) throw new Error(`no ping summary in:\n${out}`);
  return { transmitted: Number(m[1]), received: Number(m[2]), loss: `${m[3]}%` };
}

interface StreamResult {
  sent: number;
  echoed: number;
  maxRttMs: number;
  errors: string[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("nkitd restart with live pods", () => {
  it("SIGTERM and a new nkitd on the same dirs: pings lose nothing, the TCP connection survives, endpoints are adopted", async () => {
    const s = await nkitdSetup(scope, "rst");
    const first = await Nkitd.start(scope, ["--config", s.config]);
    const client = new NkitClient(s.socket, { timeoutMs: 30_000 });
    scope.defer(() => client.close());

    const podA = await createNetns(scope, "rsta");
    const podB = await createNetns(scope, "rstb");
    const idA = `nkt-${RUN_ID}-rst-a-${process.pid}`;
    const idB = `nkt-${RUN_ID}-rst-b-${process.pid}`;
    // Runs before the netns go: whatever a failed test left wired.
    scope.defer(() => deleteLinks([hostIfName(idA), hostIfName(idB)]));
    const epA = await client.wireEndpoint({ id: idA, netnsPath: podA.path });
    const epB = await client.wireEndpoint({ id: idB, netnsPath: podB.path });
    const a4 = epA.addresses.ipv4;
    const b4 = epB.addresses.ipv4;
    const a6 = epA.addresses.ipv6;
    expect(a4 && b4 && a6, JSON.stringify({ epA, epB })).toBeTruthy();

    // --- traffic: TCP echo B <- A over one connection, ping A -> B (v4), ping B -> A (v6)
    const server = inPod(podB, process.execPath, [STREAM, "serve", b4, "7007"]);
    await until(() => server.out().includes("ready"), "the TCP echo server", 10_000, server.running);
    const sender = inPod(podA, process.execPath, [STREAM, "send", b4, "7007", "5"]);
    await until(
      () => sender.out().includes("connected"),
      "the TCP sender to connect",
      10_000,
      sender.running,
    );
    const pingArgs = ["-q", "-i", PING_INTERVAL, "-c", String(PING_COUNT), "-W", "2"];
    const ping4 = inPod(podA, "ping", [...pingArgs, b4]);
    const ping6 = inPod(podB, "ping", ["-6", ...pingArgs, a6]);
    await sleep(500);
    expect(ping4.running() && ping6.running(), ping4.err() + ping6.err()).toBe(true);
    expect(sender.running(), sender.out()).toBe(true);

    const filterOf = async (ep: T.Endpoint) => (await endpointFilters(ep.hostIfindex)).from;
    const filterBefore = await filterOf(epA);
    expect(filterBefore).toHaveLength(1);

    // --- restart under traffic
    const t0 = Date.now();
    const stopped = await first.stop("SIGTERM");
    expect(stopped.code, first.output()).toBe(0);
    const tDown = Date.now();
    const second = await Nkitd.start(scope, ["--config", s.config]);
    const tUp = Date.now();
    expect(second.log("datapath ready"), second.output()).toMatchObject({ mode: "veth", endpoints: 2 });
    // No stale-endpoint repair happened: both endpoints were adopted as they were.
    expect(second.logs().filter((l) => l.msg === "removing stale endpoint")).toEqual([]);
    // The same filter, the new process's program swapped in by replace.
    const filterAfter = await filterOf(epA);
    expect(filterAfter.map((f) => [f.priority, f.handle])).toEqual(
      filterBefore.map((f) => [f.priority, f.handle]),
    );
    expect(filterAfter[0]?.programId).not.toBe(filterBefore[0]?.programId);
    await sleep(300);
    // The pings must have covered the whole window, else the loss figure proves nothing.
    expect(
      ping4.running() && ping6.running(),
      `ping finished before the new nkitd was ready (${tUp - t0} ms restart): raise PING_COUNT`,
    ).toBe(true);

    // --- stop the traffic and judge it
    const [p4exit, p6exit] = await Promise.all([ping4.done, ping6.done]);
    sender.child.kill("SIGTERM");
    const sendExit = await sender.done;
    // TCP recovery inside the pods (reported): real loss shows as retransmits without DSACKs.
    const TCP_STATS = ["TcpRetransSegs", "TcpExtTCPLossProbes", "TcpExtTCPTimeouts", "TcpExtTCPDSACKRecv"];
    const tcpStats: Record<string, number> = {};
    for (const pod of [podA, podB]) {
      const { stdout } = await inNetns(pod.path, "nstat", ["-az", "-j", ...TCP_STATS]);
      for (const [k, v] of Object.entries((JSON.parse(stdout) as { kernel: Record<string, number> }).kernel))
        tcpStats[k] = (tcpStats[k] ?? 0) + v;
    }
    const p4 = parsePing(p4exit.stdout);
    const p6 = parsePing(p6exit.stdout);
    const line = sendExit.stdout.trim().split("\n").at(-1) ?? "";
    const tcp = JSON.parse(line) as StreamResult;
    console.log(
      `nkitd restart: stop ${tDown - t0} ms, start ${tUp - tDown} ms; ` +
        `ping v4 ${p4.received}/${p4.transmitted} (${p4.loss} loss), v6 ${p6.received}/${p6.transmitted} (${p6.loss} loss); ` +
        `TCP ${tcp.echoed}/${tcp.sent} echoed on one connection, max RTT ${tcp.maxRttMs} ms, TCP stats ${JSON.stringify(tcpStats)}, errors ${JSON.stringify(tcp.errors)}`,
    );
    expect(p4).toEqual({ transmitted: PING_COUNT, received: PING_COUNT, loss: "0%" });
    expect(p6).toEqual({ transmitted: PING_COUNT, received: PING_COUNT, loss: "0%" });
    expect(p4exit.code).toBe(0);
    expect(p6exit.code).toBe(0);
    expect(tcp.errors).toEqual([]);
    expect(tcp.echoed).toBe(tcp.sent);
    // 5 ms apart for several seconds: the flow really spanned the restart
    expect(tcp.sent).toBeGreaterThan(((tUp - t0) / 5) * 0.5);
    expect(sendExit.code, sendExit.stderr).toBe(0);
    // One connection from start to end.
    await until(() => server.out().includes("closed"), "the server to see the close", 5_000);
    const events = server
      .out()
      .split("\n")
      .filter((l) => /^(conn|closed|error) /.test(l));
    expect(events.map((l) => l.split(" ")[0])).toEqual(["conn", "closed"]);

    // --- the new nkitd adopted both endpoints on the same host devices
    const list = await nkitJson<T.Endpoint[]>(s.socket, "endpoint", "list");
    const pick = (e: T.Endpoint | undefined) => e && { id: e.id, dev: e.hostIfName, ifindex: e.hostIfindex };
    expect(list.map(pick)).toEqual([epA, epB].sort((x, y) => (x.id < y.id ? -1 : 1)).map(pick));
    for (const ep of [epA, epB]) {
      const [dev] = await ipJson<{ ifindex: number; ifname: string }[]>([
        "link",
        "show",
        "dev",
        ep.hostIfName,
      ]);
      expect(dev?.ifindex).toBe(ep.hostIfindex);
    }
    const status = await nkitJson<T.StatusResponse>(s.socket, "status");
    expect(status.pid).toBe(second.pid);
    expect(status.endpointCount).toBe(2);

    // The traffic went through the BPF datapath and nothing of it was dropped there.
    for (const id of [idA, idB]) {
      const got = await nkitJson<{ counters: { reason: string; drop: boolean; packets: number }[] }>(
        s.socket,
        "endpoint",
        "get",
        id,
      );
      const drops = got.counters.filter((c) => c.drop && c.packets > 0);
      expect(drops, `${id} drops`).toEqual([]);
      const forwarded = got.counters.filter((c) => !c.drop).reduce((n, c) => n + c.packets, 0);
      expect(forwarded).toBeGreaterThanOrEqual(PING_COUNT);
    }

    // --- clean up through the new nkitd
    expect(await client.unwireEndpoint(idA)).toEqual({ removed: true });
    expect(await client.unwireEndpoint(idB)).toEqual({ removed: true });
    // The pairs' deletion follows the unwire's answer.
    await waitFor(
      async () => (await presentLinks([epA.hostIfName, epB.hostIfName])).size === 0,
      "the endpoints' host devices to go",
      5_000,
    );
    expect((await second.stop("SIGTERM")).code).toBe(0);
  });

  it("a VIP flow, a masqueraded flow and a host-port flow survive a restart that swaps every program", async () => {
    const s = await nkitdSetup(scope, "rsf", ["masquerade: {ipv6: true}"]);
    // The uplink's addresses first: masquerade reads them at start (and every 30 s).
    const outside = await outsideBehindUplink(scope, s, "rsfo");
    const first = await Nkitd.start(scope, ["--config", s.config]);
    const client = new NkitClient(s.socket, { timeoutMs: 30_000 });
    scope.defer(() => client.close());
    const podA = await createNetns(scope, "rsfa");
    const podB = await createNetns(scope, "rsfb");
    const idA = `nkt-${RUN_ID}-rsf-a-${process.pid}`;
    const idB = `nkt-${RUN_ID}-rsf-b-${process.pid}`;
    scope.defer(() => deleteLinks([hostIfName(idA), hostIfName(idB)]));
    const epA = await client.wireEndpoint({ id: idA, netnsPath: podA.path });
    // B as nerdctl wires it: through nkit-cni, with a published port.
    const hostPort = randomInt(20_000, 30_000);
    const add = await runShimWithPorts("ADD", {
      socket: join(s.runDir, "cni.sock"),
      containerId: idB,
      netns: podB.path,
      portMappings: [{ HostPort: hostPort, ContainerPort: 7007, Protocol: "tcp", HostIP: "0.0.0.0" }],
    });
    expect(add.code, add.stdout).toBe(0);
    scope.defer(() =>
      runShim("DEL", { socket: join(s.runDir, "cni.sock"), containerId: idB, netns: podB.path }),
    );
    const epB = await client.getEndpoint(idB).then((r) => r.endpoint);
    const vip = `10.96.${randomInt(1, 250)}.${randomInt(1, 250)}`;
    expect(
      (
        await nkit(
          s.socket,
          "service",
          "add",
          `rsf-${process.pid}`,
          "--vip",
          `${vip}:7007`,
          "--backend",
          `${epB.addresses.ipv4}:7007`,
        )
      ).code,
    ).toBe(0);

    // Servers: pod B (behind the VIP and the host port), the host beyond the uplink (masquerade).
    const inB = inPod(podB, process.execPath, [STREAM, "serve", "::", "7007"]);
    const far = spawnProc(
      "nsenter",
      [`--net=${outside.netns.path}`, "--", process.execPath, STREAM, "serve", outside.far4, "7008"],
      scope,
    );
    for (const srv of [inB, far])
      await until(() => srv.out().includes("ready"), "a TCP echo server", 10_000, srv.running);
    // Flows, one connection each, a message every 5 ms.
    const flows = {
      // pod A -> VIP: translated at connect by the socket hooks of the LB cgroup A runs in.
      vip: spawnProc(
        "sh",
        [
          "-c",
          'echo $$ > "$0/cgroup.procs" && exec "$@"',
          s.cgroup,
          "nsenter",
          `--net=${podA.path}`,
          "--",
          process.execPath,
          STREAM,
          "send",
          vip,
          "7007",
          "5",
        ],
        scope,
      ),
      // pod A -> beyond the uplink: masqueraded to the uplink's address.
      masquerade: inPod(podA, process.execPath, [STREAM, "send", outside.far4, "7008", "5"]),
      // beyond the uplink -> host port: per-packet DNAT at the uplink, reverse NAT on B's replies.
      hostPort: spawnProc(
        "nsenter",
        [
          `--net=${outside.netns.path}`,
          "--",
          process.execPath,
          STREAM,
          "send",
          outside.host4,
          String(hostPort),
          "5",
        ],
        scope,
      ),
    };
    for (const [name, f] of Object.entries(flows)) {
      await until(() => f.out().includes("connected"), `the ${name} flow to connect`, 10_000, f.running);
    }
    await sleep(500);
    const links = {
      uplink: join(s.bpffsDir, "uplinks", s.uplink, "from-uplink"),
      connect4: join(s.bpffsDir, "lb", "connect4"),
    };
    const before = Object.fromEntries(Object.entries(links).map(([k, p]) => [k, pinnedLink(p)]));
    const filterBefore = (await endpointFilters(epB.hostIfindex)).from;

    // --- restart under traffic: the new process swaps its programs into the pinned links
    expect((await first.stop("SIGTERM")).code, first.output()).toBe(0);
    await Nkitd.start(scope, ["--config", s.config]);
    for (const [k, p] of Object.entries(links)) {
      const now = pinnedLink(p);
      expect([k, now.id]).toEqual([k, before[k]?.id]);
      expect([k, now.programId]).not.toEqual([k, before[k]?.programId]);
    }
    const filterAfter = (await endpointFilters(epB.hostIfindex)).from;
    expect(filterAfter).toHaveLength(1);
    expect(filterAfter[0]?.programId).not.toBe(filterBefore[0]?.programId);
    await sleep(1_000);

    const results: Record<string, StreamResult & { code: number | null }> = {};
    for (const [name, f] of Object.entries(flows)) {
      f.child.kill("SIGTERM");
      const exit = await f.done;
      const line = exit.stdout.trim().split("\n").at(-1) ?? "";
      results[name] = { ...(JSON.parse(line) as StreamResult), code: exit.code };
    }
    console.log(`nkitd restart with service flows: ${JSON.stringify(results)}`);
    for (const [name, r] of Object.entries(results)) {
      expect([name, r.errors]).toEqual([name, []]);
      expect([name, r.echoed]).toEqual([name, r.sent]);
      expect([name, r.code]).toEqual([name, 0]);
      expect(r.sent).toBeGreaterThan(200);
    }
    // One connection per flow from start to end: no reset, no reconnect.
    await until(() => (inB.out().match(/^closed /gm) ?? []).length >= 2, "B to see both closes", 5_000);
    await until(() => far.out().includes("closed"), "the far host to see the close", 5_000);
    const events = (p: Proc) =>
      p
        .out()
        .split("\n")
        .filter((l) => /^(conn|closed|error) /.test(l))
        .map((l) => l.split(" ")[0]);
    expect(events(inB).sort()).toEqual(["closed", "closed", "conn", "conn"]);
    expect(events(far)).toEqual(["conn", "closed"]);
    // The far host saw the uplink's address (masqueraded), B saw A's own address through the VIP.
    expect(far.out()).toContain(`conn ${outside.host4}:`);
    expect(inB.out()).toContain(`${epA.addresses.ipv4}:`);
  });
});
