// Static multi-host routing (`peers:`): two "hosts", each a network namespace with its own nkitd,
// bpffs dir, cgroup and pod CIDRs, joined by a veth as their uplinks. Each names the other as a peer:
// a pod on one host reaches a pod on the other over v4 and v6 with its own address (routed directly,
// never masqueraded, although masquerade is on for both families), the routes carry nkitd's
// protocol number, and a peer removed from the config (SIGHUP) loses its routes.
import { randomInt } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NkitClient } from "../../src/api/client.js";
import type { Node } from "../../src/api/types.js";
import { createTestCgroup } from "../helpers/cgroup.js";
import { uniqueIfName } from "../helpers/names.js";
import { createNetns, type TestNetns } from "../helpers/netns.js";
import {
  NET_FIXTURES,
  Nkitd,
  nkitdDirs,
  nkitJson,
  peerRoutesIn,
  requireDist,
  startNetFixture,
} from "../helpers/nkitd.js";
import { Scope } from "../helpers/scope.js";
import { run } from "../helpers/sys.js";

const scope = new Scope();

interface Host {
  netns: TestNetns;
  uplink: string;
  addr4: string;
  addr6: string;
  cidr4: string;
  cidr6: string;
  config: string;
  socket: string;
  nkitd?: Nkitd;
  api?: NkitClient;
  pod?: { netns: TestNetns; ipv4: string; ipv6: string };
}

const PORT = 7070;
const UDP_PORT = 7080;
const a4 = randomInt(100, 250);
const a6 = randomInt(0x1000, 0xffff).toString(16);
let one: Host;
let two: Host;

function configText(h: Host, dirs: ReturnType<typeof nkitdDirs>, cgroup: string, peers: Host[]): string {
  return [
    "datapath: auto",
    `podCIDRs: [${h.cidr4}, "${h.cidr6}"]`,
    `uplinks: [${h.uplink}]`,
    `paths: {state: ${dirs.stateDir}, run: ${dirs.runDir}, bpffs: ${dirs.bpffsDir}, services: ${join(dirs.dir, "services.d")}, cgroup: ${cgroup}}`,
    "nri: {enabled: false}",
    "log: {level: info}",
    // Masquerade on for both families: the peers' pods must still see the pod's own address.
    "masquerade: {enabled: true, ipv6: true}",
    `peers: [${peers.map((p) => `{name: ${p.netns.name}, address: [${p.addr4}, "${p.addr6}"], podCIDRs: [${p.cidr4}, "${p.cidr6}"]}`).join(", ")}]`,
  ].join("\n");
}

/** TCP from a pod to host:port: what the server saw as the client's address (peer-echo), or "error:...". */
async function seenFrom(pod: TestNetns, host: string, port: number): Promise<string> {
  const js = `const s = require("node:net").connect({ host: process.argv[1], port: Number(process.argv[2]), timeout: 3000 });
let out = ""; s.on("data", (d) => (out += d)); s.on("end", () => process.stdout.write(out));
s.on("error", (e) => process.stdout.write("error:" + e.code)); s.on("timeout", () => { process.stdout.write("error:timeout"); s.destroy(); });`;
  return (await run("nsenter", [`--net=${pod.path}`, "--", process.execPath, "-e", js, host, String(port)]))
    .stdout;
}

const peerRoutes = (h: { netns: { name: string } }) => peerRoutesIn(h.netns.name);

beforeAll(async () => {
  requireDist();
  const mk = async (n: number): Promise<Host> => ({
    netns: await createNetns(scope, `peer${n}`),
    uplink: uniqueIfName(`u${n}`),
    addr4: `10.${a4}.0.${n}`,
    addr6: `fd${a6.slice(0, 2)}:${a6}::${n}`,
    cidr4: `10.${a4}.${n}.0/24`,
    cidr6: `fd${a6.slice(0, 2)}:${a6}:${n}::/64`,
    config: "",
    socket: "",
  });
  one = await mk(1);
  two = await mk(2);
  // The link between the two hosts: each end is its host's uplink.
  await run("ip", [
    "link",
    "add",
    one.uplink,
    "netns",
    one.netns.name,
    "type",
    "veth",
    "peer",
    "name",
    two.uplink,
    "netns",
    two.netns.name,
  ]);
  for (const h of [one, two]) {
    await run("ip", ["-n", h.netns.name, "addr", "add", `${h.addr4}/24`, "dev", h.uplink]);
    await run("ip", ["-n", h.netns.name, "addr", "add", `${h.addr6}/64`, "dev", h.uplink, "nodad"]);
    await run("ip", ["-n", h.netns.name, "link", "set", h.uplink, "up"]);
  }
  for (const [h, other] of [
    [one, two],
    [two, one],
  ] as const) {
    const dirs = nkitdDirs(scope, h.netns.name);
    const cgroup = createTestCgroup(scope, h.netns.name.slice(-6));
    h.config = join(dirs.dir, "nkitd.yaml");
    h.socket = dirs.socket;
    writeFileSync(h.config, configText(h, dirs, cgroup, [other]));
    h.nkitd = await Nkitd.start(scope, ["--config", h.config], h.netns.path);
    h.api = new NkitClient(dirs.socket);
    const api = h.api;
    scope.defer(() => api.close());
    const podNs = await createNetns(scope, `${h.netns.name.slice(-5)}p`);
    const ep = await api.wireEndpoint({ id: `peerpod-${h.netns.name}`, netnsPath: podNs.path });
    scope.defer(() => api.unwireEndpoint(ep.id).catch(() => undefined));
    h.pod = { netns: podNs, ipv4: ep.addresses.ipv4, ipv6: ep.addresses.ipv6 };
    await startNetFixture(scope, podNs.path, "peer-echo.mjs", [String(PORT)]);
    await startNetFixture(scope, podNs.path, "lb-backend.mjs", [h.netns.name, String(UDP_PORT)]);
  }
}, 120_000);

afterAll(() => scope.close(), 60_000);

describe("static peers: pods on two hosts", () => {
  it("route each other's pod CIDRs to the peer's address, marked as nkitd's", async () => {
    expect(await peerRoutes(one)).toEqual([
      expect.stringContaining(`${two.cidr4} via ${two.addr4}`),
      expect.stringContaining(`${two.cidr6} via ${two.addr6}`),
    ]);
    expect((await peerRoutes(two)).length).toBe(2);
    const nodes = await nkitJson<Node[]>(one.socket, "node", "list");
    expect(nodes).toEqual([
      {
        name: two.netns.name,
        addresses: [two.addr4, two.addr6],
        podCidrs: [two.cidr4, two.cidr6],
        source: "peers",
        routes: [
          { podCidr: two.cidr4, via: two.addr4, state: "installed" },
          { podCidr: two.cidr6, via: two.addr6, state: "installed" },
        ],
        self: false,
        heartbeatAt: "",
      },
    ]);
  });

  it("reach each other over v4 and v6 with their own addresses (no masquerade)", async () => {
    expect(await seenFrom(one.pod!.netns, two.pod!.ipv4, PORT)).toBe(one.pod!.ipv4);
    expect(await seenFrom(one.pod!.netns, two.pod!.ipv6, PORT)).toBe(one.pod!.ipv6);
    expect(await seenFrom(two.pod!.netns, one.pod!.ipv4, PORT)).toBe(two.pod!.ipv4);
    expect(await seenFrom(two.pod!.netns, one.pod!.ipv6, PORT)).toBe(two.pod!.ipv6);
  });

  it("answer the other host itself from the pod's address, also over UDP (peers' addresses are not masqueraded)", async () => {
    for (const dst of [two.pod!.ipv4, two.pod!.ipv6]) {
      const r = await run("nsenter", [
        `--net=${one.netns.path}`,
        "--",
        process.execPath,
        join(NET_FIXTURES, "lb-client.mjs"),
        "udp",
        dst,
        String(UDP_PORT),
      ]);
      expect(JSON.parse(r.stdout.trim())).toEqual({
        reply: `${two.netns.name}:ping`,
        from: dst,
        fromPort: UDP_PORT,
      });
    }
  });

  it("a peer removed from the config (SIGHUP) loses its routes", async () => {
    const lines = readFileSync(one.config, "utf8").split("\n");
    writeFileSync(one.config, lines.map((l) => (l.startsWith("peers:") ? "peers: []" : l)).join("\n"));
    one.nkitd!.proc.child.kill("SIGHUP");
    const deadline = Date.now() + 10_000;
    while ((await peerRoutes(one)).length > 0 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 100));
    expect(await peerRoutes(one)).toEqual([]);
    expect(await nkitJson<Node[]>(one.socket, "node", "list")).toEqual([]);
    expect((await peerRoutes(two)).length).toBe(2);
  });
});
