// A Nomad cluster of two client nodes on nkit, against real Nomad v1.6.5: one server (host netns, on
// a test LAN), two clients, each in its own network namespace with its own nkitd, bpffs dir, cgroup
// and CNI dirs from `nkit install`; the nodes' uplinks share a bridge (the LAN). The two nkitds start
// together and claim their pod CIDRs out of the cluster CIDRs in a Nomad Variable; each routes to the
// other's pods directly. Allocation → allocation across nodes keeps the client's pod address (no NAT);
// a service with backends on both nodes answers from either; a restarted nkitd (also while Nomad's
// server is down) keeps its claim and the other keeps routing to it; a server restart loses and
// duplicates no service; a departed node is forgotten by an operator or by the TTL; a clean leave
// frees the claim and stops nkitd.
import { randomInt } from "node:crypto";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NkitClient } from "../../src/api/client.js";
import type { Node, Service, StatusResponse } from "../../src/api/types.js";
import { NomadClient } from "../../src/nomad/client.js";
import { NodeClaims } from "../../src/nomad/node-claims.js";
import { IpPrefix } from "../../src/util/ip.js";
import { createTestCgroup } from "../helpers/cgroup.js";
import { RUN_ID, uniqueIfName } from "../helpers/names.js";
import { createNetns, type TestNetns, vethBetween } from "../helpers/netns.js";
import {
  doctorCheck,
  Nkitd,
  type NkitdDirs,
  nkit,
  nkitdDirs,
  nkitJson,
  peerRoutesIn,
} from "../helpers/nkitd.js";
import { Scope } from "../helpers/scope.js";
import { run } from "../helpers/sys.js";
import { httpdGroup, installCni, NomadAgent, nomadPortBase, nomadUnavailable } from "./env.js";
import { getFrom, until } from "./http.js";

const skip = nomadUnavailable();
const scope = new Scope();
const suffix = `${RUN_ID}-${process.pid}`.toLowerCase();

const lan4 = randomInt(100, 250);
const lan6 = randomInt(0x1000, 0xffff).toString(16);
const cluster4 = lan4 === 250 ? 101 : lan4 + 1;
const cluster6 = `fd${randomInt(16, 255).toString(16)}:${randomInt(1, 0xffff).toString(16)}:${randomInt(1, 0xff).toString(16)}00`;
const CLUSTER = [`10.${cluster4}.0.0/16`, `${cluster6}::/56`];
const TTL_S = 15;
const variable = `nkit/cluster-${suffix}`;

interface ClusterNode {
  name: string;
  netns: TestNetns;
  uplink: string;
  addr4: string;
  addr6: string;
  dirs: NkitdDirs;
  config: string;
  cgroup: string;
  nkitd: Nkitd;
  api: NkitClient;
  agent: NomadAgent;
}

let server: NomadAgent;
const nodes: ClusterNode[] = [];

/** A job with one allocation on each node (pinned by name), registering service `svc`. */
const job = (id: string, svc: string) => `
job "${id}" {
  datacenters = ["dc1"]
  type = "service"
${nodes
  .map((n, i) =>
    httpdGroup({
      name: `g${i + 1}`,
      node: n.name,
      service: svc,
      prepare: "/bin/busybox mkdir -p /tmp/www/cgi-bin",
    }),
  )
  .join("\n")}
}
`;

function configText(n: ClusterNode, clientHttp: number, ttl: number): string {
  return [
    "datapath: auto",
    `uplinks: [${n.uplink}]`,
    `paths: {state: ${n.dirs.stateDir}, run: ${n.dirs.runDir}, bpffs: ${n.dirs.bpffsDir}, services: ${join(n.dirs.dir, "services.d")}, cgroup: ${n.cgroup}}`,
    "nri: {enabled: false}",
    "log: {level: info}",
    // Masquerade on for both families: pods on the other node must still see the pod's own address.
    "masquerade: {enabled: true, ipv6: true}",
    `nomad: {address: "http://${n.addr4}:${clientHttp}", cluster: {cidrs: [${CLUSTER[0]}, "${CLUSTER[1]}"], nodeName: ${n.name}, variable: ${variable}, ttl: ${ttl}}}`,
  ].join("\n");
}

/** The address a pod's HTTP server saw for a GET of /cgi-bin/peer from `fromNetns`. */
async function peerSeen(fromNetns: string, address: string): Promise<string> {
  const body = (await getFrom({ netns: fromNetns }, address, 8080, "/cgi-bin/peer")).trim();
  return body.replace(/^\[|\]$/g, "").replace(/^::ffff:/, "");
}

const routes = (n: { netns: { name: string } }) => peerRoutesIn(n.netns.name);

const listNodes = (n: ClusterNode) => nkitJson<Node[]>(n.dirs.socket, "node", "list");

/** Waits for nkit's service of Nomad service `svc` with `backends` backends (after a Nomad outage the
 * sync may first sit out its backoff, up to 30 s, or notice a silent stream, 30 s). */
async function nomadService(n: ClusterNode, svc: string, backends: number): Promise<Service> {
  return until(
    server,
    `${n.name}: service ${svc} with ${backends} backends`,
    async () => {
      const all = (await n.api.listServices()).services.filter((s) => s.source === "nomad");
      const s = all.find((x) => x.name === `nomad.default.${svc}`);
      return s && s.backends.length === backends ? s : undefined;
    },
    90_000,
  );
}

beforeAll(async () => {
  if (skip) return;
  // The LAN: a bridge in a netns of its own; the host joins it with one veth (the server's address).
  const lan = await createNetns(scope, "lan");
  await run("ip", ["-n", lan.name, "link", "add", "br0", "type", "bridge"]);
  await run("ip", ["-n", lan.name, "link", "set", "br0", "up"]);
  const hostIf = uniqueIfName("h");
  await run("ip", ["link", "add", hostIf, "type", "veth", "peer", "name", `${hostIf}p`, "netns", lan.name]);
  scope.defer(() => run("ip", ["link", "del", hostIf]).catch(() => undefined));
  const serverAddr = `10.${lan4}.0.254`;
  await run("ip", ["addr", "add", `${serverAddr}/24`, "dev", hostIf]);
  await run("ip", ["link", "set", hostIf, "up"]);
  await run("ip", ["-n", lan.name, "link", "set", `${hostIf}p`, "master", "br0", "up"]);
  const base = nomadPortBase();
  server = await NomadAgent.start(scope, undefined, base, { role: "server", bind: serverAddr });

  const clientHttp = base + 10;
  for (const k of [1, 2]) {
    const netns = await createNetns(scope, `node${k}`);
    const uplink = uniqueIfName(`n${k}`);
    await vethBetween(uplink, netns.name, `${uplink}p`, lan.name);
    await run("ip", ["-n", lan.name, "link", "set", `${uplink}p`, "master", "br0", "up"]);
    const addr4 = `10.${lan4}.0.${k}`;
    const addr6 = `fd${lan6.slice(0, 2)}:${lan6}::${k}`;
    await run("ip", ["-n", netns.name, "addr", "add", `${addr4}/24`, "dev", uplink]);
    await run("ip", ["-n", netns.name, "addr", "add", `${addr6}/64`, "dev", uplink, "nodad"]);
    await run("ip", ["-n", netns.name, "link", "set", uplink, "up"]);
    const dirs = nkitdDirs(scope, `node${k}`);
    const n = {
      name: `nk-${suffix}-${k}`,
      netns,
      uplink,
      addr4,
      addr6,
      dirs,
      config: join(dirs.dir, "nkitd.yaml"),
      cgroup: createTestCgroup(scope, `node${k}`),
    } as ClusterNode;
    writeFileSync(n.config, configText(n, clientHttp, TTL_S));
    nodes.push(n);
  }
  // Both nkitds start at the same moment (before their agents: a first join waits for Nomad).
  for (const n of nodes) n.nkitd = Nkitd.spawn(scope, ["--config", n.config], n.netns.path);
  await Promise.all(
    nodes.map(async (n, i) => {
      const cni = await installCni(scope, { socket: join(n.dirs.runDir, "cni.sock") });
      n.agent = await NomadAgent.start(scope, cni, clientHttp, {
        role: "client",
        bind: n.addr4,
        servers: [`${serverAddr}:${base + 1}`],
        netns: n.netns.path,
        name: n.name,
        networkInterface: n.uplink,
        cgroupParent: `/nkt-${suffix}-${i + 1}`,
      });
    }),
  );
  for (const n of nodes) {
    await n.nkitd.ready(60_000);
    n.api = new NkitClient(n.dirs.socket);
    const api = n.api;
    scope.defer(() => api.close());
  }
  // Unwound first: every job purged while both nkitds still answer the CNI DELs.
  scope.defer(() => server.purgeAll());
}, 240_000);

afterAll(() => scope.close(), 240_000);

describe.skipIf(skip !== undefined)(
  `a Nomad cluster of two nkit nodes${skip ? ` (skipped: ${skip})` : ""}`,
  () => {
    const svc = `nkx-${suffix}`;
    const id = `nkx-${suffix}`;
    const allocs: { node: ClusterNode; id: string; ipv4: string; ipv6: string }[] = [];

    it("two nodes starting together claim different pod CIDRs and route to each other's", async () => {
      const [one, two] = nodes as [ClusterNode, ClusterNode];
      const claims = new NodeClaims({ client: new NomadClient({ address: server.http }), path: variable });
      const table = await claims.list();
      expect(table.map((r) => r.name)).toEqual([one.name, two.name].sort());
      const cidrs = table.flatMap((r) => r.podCIDRs);
      expect(new Set(cidrs).size).toBe(4);
      for (const c of cidrs) {
        const p = IpPrefix.parse(c);
        expect(CLUSTER.map((x) => IpPrefix.parse(x)).some((x) => x.contains(p.network))).toBe(true);
      }
      for (const [me, other] of [
        [one, two],
        [two, one],
      ] as const) {
        const mine = table.find((r) => r.name === me.name)!;
        const theirs = table.find((r) => r.name === other.name)!;
        expect(mine.addresses).toEqual([me.addr4, me.addr6]);
        const listed = await until(server, `${me.name} to route to ${other.name}`, async () => {
          const l = await listNodes(me);
          return l.length === 2 && l[1]?.routes.length === 2 ? l : undefined;
        });
        expect(listed).toEqual([
          {
            name: me.name,
            addresses: [me.addr4, me.addr6],
            podCidrs: mine.podCIDRs,
            source: "nomad",
            routes: [],
            self: true,
            heartbeatAt: expect.any(String),
          },
          {
            name: other.name,
            addresses: [other.addr4, other.addr6],
            podCidrs: theirs.podCIDRs,
            source: "nomad",
            routes: [
              { podCidr: theirs.podCIDRs[0], via: other.addr4, state: "installed" },
              { podCidr: theirs.podCIDRs[1], via: other.addr6, state: "installed" },
            ],
            self: false,
            heartbeatAt: expect.any(String),
          },
        ]);
        expect(await routes(me)).toEqual([
          expect.stringContaining(`${theirs.podCIDRs[0]} via ${other.addr4}`),
          expect.stringContaining(`${theirs.podCIDRs[1]} via ${other.addr6}`),
        ]);
        // The IPAM hands out addresses of the claim.
        const ipam = await me.api.ipam();
        expect(ipam.pools.map((p) => p.cidr)).toEqual(mine.podCIDRs);
      }
      const status = (await nkit(one.dirs.socket, "status")).stdout;
      expect(status).toMatch(
        new RegExp(
          `^cluster: +node ${one.name}, pod CIDRs 10\\.${cluster4}\\.\\d+\\.0/24, .*, 1 other nodes; in sync$`,
          "m",
        ),
      );
      const text = (await nkit(one.dirs.socket, "node", "list")).stdout;
      expect(text).toContain("(this node)");
      expect(text).toContain(`${table.find((r) => r.name === two.name)!.podCIDRs[0]} via ${two.addr4}`);
    });

    it("allocation to allocation across nodes over direct routes: the server sees the client's pod address", async () => {
      await server.runJob(job(id, svc));
      const running = await server.running(id, 2);
      for (const a of running) {
        const node = await nodeOf(a.ID);
        // A CGI script answering with the client's address as the pod saw it (written from outside:
        // no shell quoting through HCL), CRLF headers for a strict HTTP parser.
        const cgi = join(node.agent.dataDir, "data", "alloc", a.ID, "httpd", "tmp", "www", "cgi-bin");
        await until(server, `${cgi} to exist`, async () => (existsSync(cgi) ? true : undefined));
        writeFileSync(
          join(cgi, "peer"),
          '#!/bin/busybox sh\nprintf "Content-Type: text/plain\\r\\n\\r\\n%s\\n" "$REMOTE_ADDR"\n',
          { mode: 0o755 },
        );
        const ep = (await node.api.getEndpoint(a.ID)).endpoint;
        allocs.push({ node, id: a.ID, ipv4: ep.addresses.ipv4, ipv6: ep.addresses.ipv6 });
      }
      const [a1, a2] = [allocs.find((a) => a.node === nodes[0])!, allocs.find((a) => a.node === nodes[1])!];
      expect(a1 && a2).toBeTruthy();
      for (const [from, to] of [
        [a1, a2],
        [a2, a1],
      ] as const) {
        expect(await peerSeen(`/var/run/netns/${from.id}`, to.ipv4)).toBe(from.ipv4);
        expect(await peerSeen(`/var/run/netns/${from.id}`, to.ipv6)).toBe(from.ipv6);
      }
    });

    it("a service with backends on both nodes answers from either node, with the same VIP", async () => {
      const seen: string[] = [];
      for (const n of nodes) {
        const s = await nomadService(n, svc, 2);
        seen.push(s.vip);
        const answers = new Set<string>();
        for (let i = 0; i < 16; i++) {
          answers.add((await getFrom({ cgroup: n.cgroup, netns: n.netns.path }, s.vip, 8080)).trim());
        }
        expect(answers).toEqual(new Set(allocs.map((a) => a.id)));
      }
      expect(seen[0]).toBe(seen[1]);
    });

    it("a restarted nkitd keeps its claim (also with Nomad's server down); the other node keeps routing to it", async () => {
      const [one, two] = nodes as [ClusterNode, ClusterNode];
      const a1 = allocs.find((a) => a.node === one)!;
      const a2 = allocs.find((a) => a.node === two)!;
      const before = await listNodes(two);
      await two.nkitd.stop();
      expect(await peerSeen(`/var/run/netns/${a1.id}`, a2.ipv4)).toBe(a1.ipv4);
      two.nkitd = await Nkitd.start(scope, ["--config", two.config], two.netns.path);
      expect((await listNodes(two))[0]?.podCidrs).toEqual(before[0]?.podCidrs);
      expect((await listNodes(one))[1]?.routes.every((r) => r.state === "installed")).toBe(true);

      // Server down: a restart goes on with the saved claim and the last known nodes at once.
      await server.stopAgent();
      await two.nkitd.stop();
      two.nkitd = await Nkitd.start(scope, ["--config", two.config], two.netns.path);
      expect(
        two.nkitd.log("Nomad unreachable: this node goes on with its last claim and the last known nodes"),
      ).toBeDefined();
      const st = await nkitJson<StatusResponse>(two.dirs.socket, "status");
      expect(st.cluster).toMatchObject({ node: two.name, connected: false, nodes: 1 });
      expect(await doctorCheck(two.dirs.socket, "Nomad cluster membership")).toMatchObject({
        status: "warn",
        detail: expect.stringMatching(/^Nomad unreachable .* keeps .* and routes to the last known nodes/),
      });
      const kept = await listNodes(two);
      expect(kept.map((n) => [n.name, n.podCidrs])).toEqual(before.map((n) => [n.name, n.podCidrs]));
      expect(await peerSeen(`/var/run/netns/${a2.id}`, a1.ipv6)).toBe(a2.ipv6);
    });

    it("after a server restart the service sync resumes without a duplicate or a lost service", async () => {
      await server.startAgain();
      for (const n of nodes) {
        await until(server, `${n.name}'s client to be ready`, async () => {
          const all = await server.get<{ Name: string; Status: string }[]>("/v1/nodes");
          return all.find((x) => x.Name === n.name)?.Status === "ready" ? true : undefined;
        });
      }
      const svc2 = `nkx2-${suffix}`;
      const id2 = `nkx2-${suffix}`;
      await server.runJob(job(id2, svc2));
      for (const n of nodes) {
        const s2 = await nomadService(n, svc2, 2);
        expect(s2.vip).toMatch(/^10\.96\./);
        const s = await nomadService(n, svc, 2);
        const names = (await n.api.listServices()).services
          .filter((x) => x.source === "nomad")
          .map((x) => x.name)
          .sort();
        expect(names).toEqual([s.name, s2.name].sort());
      }
      await server.stopJob(id2);
      await server.stopJob(id);
      for (const n of nodes) {
        await until(server, `${n.name}: no endpoints left`, async () =>
          (await n.api.listEndpoints()).endpoints.length === 0 ? true : undefined,
        );
      }
    });

    it("a departed node keeps its claim until forgotten (nkit node forget) or past the TTL", async () => {
      const [one, two] = nodes as [ClusterNode, ClusterNode];
      const claims = new NodeClaims({ client: new NomadClient({ address: server.http }), path: variable });
      // A node that left without a word: an operator forgets it.
      const ghost = await claims.claim(
        { name: `ghost-${suffix}`, addresses: [`10.${lan4}.0.77`] },
        {
          clusterCIDRs: CLUSTER.map((c) => IpPrefix.parse(c)),
          nodeMask: { 4: 24, 6: 64 },
        },
      );
      await until(server, `${one.name} to route to the ghost`, async () =>
        (await routes(one)).some((r) => r.startsWith(`${ghost.podCIDRs[0]} via 10.${lan4}.0.77`))
          ? true
          : undefined,
      );
      const forgot = await nkit(one.dirs.socket, "node", "forget", ghost.name);
      expect(forgot.stdout).toContain(`forgot node ${ghost.name}`);
      await until(server, "the ghost's route to go", async () =>
        (await routes(one)).some((r) => r.startsWith(ghost.podCIDRs[0]!)) ? undefined : true,
      );
      const self = await nkit(one.dirs.socket, "node", "forget", one.name);
      expect(self.code).not.toBe(0);
      expect(self.stderr).toContain("is this node: use nkit node leave");

      // nkitd gone without leaving: its claim and the routes to it stay until the TTL frees them.
      await two.nkitd.stop("SIGKILL");
      const killedAt = Date.now();
      await until(
        server,
        `${two.name}'s claim to expire`,
        async () => ((await listNodes(one)).some((n) => n.name === two.name) ? undefined : true),
        (TTL_S + 30) * 1000,
      );
      expect(Date.now() - killedAt).toBeGreaterThan((TTL_S - 6) * 1000);
      expect(await routes(one)).toEqual([]);
      expect((await claims.list()).map((n) => n.name)).toEqual([one.name]);
    });

    it("a clean leave is refused while pods are wired, then frees the claim and stops nkitd", async () => {
      const [one] = nodes as [ClusterNode];
      const pod = await createNetns(scope, "leavepod");
      const ep = await one.api.wireEndpoint({ id: `leave-${suffix}`, netnsPath: pod.path });
      const refused = await nkit(one.dirs.socket, "node", "leave");
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toMatch(/1 pods are wired on this node .*nkit node leave --force/);
      await one.api.unwireEndpoint(ep.id);
      const left = await nkit(one.dirs.socket, "node", "leave");
      expect(left.stdout).toMatch(/^left the cluster, released 10\./);
      const exit = await one.nkitd.proc.done;
      expect(exit.code).toBe(0);
      const claims = new NodeClaims({ client: new NomadClient({ address: server.http }), path: variable });
      expect(await claims.list()).toEqual([]);
    });
  },
);

/** The node whose nkitd wired an allocation. */
async function nodeOf(allocId: string): Promise<ClusterNode> {
  for (const n of nodes) {
    const eps = (await n.api.listEndpoints()).endpoints;
    if (eps.some((e) => e.id === allocId)) return n;
  }
  throw new Error(`no node wired allocation ${allocId}`);
}
