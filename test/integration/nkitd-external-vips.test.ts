// Service VIPs reached from other hosts (`external: true`), per packet at the uplink, through a live
// nkitd: a client behind the uplink (a netns that routes the service CIDRs to this host) reaches
//   - a VIP whose backends are pods on this host (Maglev choice, reverse NAT on the pods' replies);
//   - a VIP whose backend lives on another host (a netns one router hop behind the client's):
//     destination and source are translated (the flow leaves with the uplink's address, so the
//     backend answers here), the reply is translated back and sent to the client from the VIP.
// TCP and UDP, IPv4 and IPv6; the host's global forwarding switches are never needed.
import { randomInt } from "node:crypto";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NkitClient } from "../../src/api/client.js";
import { createNetns, type TestNetns } from "../helpers/netns.js";
import {
  maglevEntries,
  Nkitd,
  type NkitdSetup,
  nkit,
  nkitdSetup,
  nkitJson,
  type OutsideNetns,
  outsideBehindUplink,
  requireDist,
  startNetFixture,
  wireBackendPods,
} from "../helpers/nkitd.js";
import { Scope } from "../helpers/scope.js";
import { run } from "../helpers/sys.js";

const FIXTURES = join(import.meta.dirname, "..", "fixtures", "net");
const CLIENT = join(FIXTURES, "lb-client.mjs");
const LOCAL4 = "10.96.72.10";
const LOCAL6 = "fd96::7210";
const REMOTE4 = "10.96.72.20";
const REMOTE6 = "fd96::7220";
// The other host's subnet behind the client's netns (a router hop away from this host).
const R = randomInt(1, 250);
const R4 = { net: `10.${randomInt(100, 250)}.${R}`, host: "" };
R4.host = `${R4.net}.2`;
const R6 = { net: `fd${randomInt(16, 255).toString(16)}:${R.toString(16)}:2`, host: "" };
R6.host = `${R6.net}::2`;

const scope = new Scope();
let setup: NkitdSetup;
let daemon: Nkitd;
let api: NkitClient;
let outside: OutsideNetns;
let remote: TestNetns;

interface TcpResult {
  answers: Record<string, number>;
  errors: Record<string, number>;
  peers: string[];
}

async function fromOutside<T>(...args: string[]): Promise<T> {
  const r = await run(
    "nsenter",
    [`--net=${outside.netns.path}`, "--", process.execPath, CLIENT, ...args],
    60_000,
  );
  return JSON.parse(r.stdout.trim()) as T;
}

beforeAll(async () => {
  requireDist();
  setup = await nkitdSetup(scope, "ext", [
    "services:",
    "  - name: local",
    `    vip: ${LOCAL4}`,
    "    ports: [{port: 80, protocol: tcp, targetPort: 8080}, {port: 53, protocol: udp, targetPort: 8080}]",
    "    selector: {app: ext}",
    "    external: true",
    "  - name: local6",
    `    vip: "${LOCAL6}"`,
    "    ports: [{port: 80, protocol: tcp, targetPort: 8080}]",
    "    selector: {app: ext}",
    "    external: true",
    "  - name: remote",
    `    vip: ${REMOTE4}`,
    "    ports: [{port: 80, protocol: tcp, targetPort: 8080}, {port: 53, protocol: udp, targetPort: 8080}]",
    `    backends: ["${R4.host}"]`,
    "    external: true",
    "  - name: remote6",
    `    vip: "${REMOTE6}"`,
    "    ports: [{port: 80, protocol: tcp, targetPort: 8080}, {port: 53, protocol: udp, targetPort: 8080}]",
    `    backends: ["${R6.host}"]`,
    "    external: true",
  ]);
  outside = await outsideBehindUplink(scope, setup, "eo");
  const o = outside.netns.name;
  // The client's netns routes the service CIDRs to this host and routes for the other host.
  await run("ip", ["-n", o, "route", "add", "10.96.0.0/16", "via", outside.host4]);
  await run("ip", ["-n", o, "-6", "route", "add", "fd96::/112", "via", outside.host6]);
  await run("ip", ["netns", "exec", o, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
  await run("ip", ["netns", "exec", o, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
  remote = await createNetns(scope, "er");
  const dev = `${setup.uplink}r`;
  await run("ip", [
    "-n",
    o,
    "link",
    "add",
    dev,
    "type",
    "veth",
    "peer",
    "name",
    "eth0",
    "netns",
    remote.name,
  ]);
  await run("ip", ["-n", o, "addr", "add", `${R4.net}.1/24`, "dev", dev]);
  await run("ip", ["-n", o, "addr", "add", `${R6.net}::1/64`, "dev", dev, "nodad"]);
  await run("ip", ["-n", o, "link", "set", dev, "up"]);
  await run("ip", ["-n", remote.name, "addr", "add", `${R4.host}/24`, "dev", "eth0"]);
  await run("ip", ["-n", remote.name, "addr", "add", `${R6.host}/64`, "dev", "eth0", "nodad"]);
  await run("ip", ["-n", remote.name, "link", "set", "eth0", "up"]);
  await run("ip", ["-n", remote.name, "route", "add", "default", "via", `${R4.net}.1`]);
  await run("ip", ["-n", remote.name, "-6", "route", "add", "default", "via", `${R6.net}::1`]);
  // This host reaches the other host through the client's netns (routes go with the uplink).
  await run("ip", ["route", "add", `${R4.net}.0/24`, "via", outside.far4, "dev", setup.uplink]);
  await run("ip", ["-6", "route", "add", `${R6.net}::/64`, "via", outside.far6, "dev", setup.uplink]);
  await startNetFixture(scope, remote.path, "lb-backend.mjs", ["rb", "8080"]);

  daemon = await Nkitd.start(scope, ["--config", setup.config]);
  api = new NkitClient(setup.socket);
  scope.defer(() => api.close());
  await wireBackendPods(scope, api, "ext", ["p1", "p2"], { app: "ext" });
}, 120_000);

afterAll(async () => {
  await scope.close();
});

describe("external VIPs through nkitd", () => {
  it("load-balances a VIP reached from another host over this host's pods, TCP and UDP, v4 and v6", async () => {
    for (const vip of [LOCAL4, LOCAL6]) {
      const tcp = await fromOutside<TcpResult>("tcp", vip, "80", "60");
      expect(tcp.errors, vip).toEqual({});
      expect(Object.keys(tcp.answers).sort(), vip).toEqual(["p1", "p2"]);
      expect(tcp.peers, vip).toEqual([vip]);
    }
    const udp = await fromOutside<{ reply: string; from: string; fromPort: number }>("udp", LOCAL4, "53");
    expect(udp.reply).toMatch(/^p[12]:ping$/);
    expect(udp.from).toBe(LOCAL4);
    expect(udp.fromPort).toBe(53);
  });

  it("sends a VIP's flows to a backend on another host and the replies back from the VIP, TCP and UDP, v4 and v6", async () => {
    for (const vip of [REMOTE4, REMOTE6]) {
      const tcp = await fromOutside<TcpResult>("tcp", vip, "80", "20");
      expect(tcp.errors, vip).toEqual({});
      expect(tcp.answers, vip).toEqual({ rb: 20 });
      expect(tcp.peers, vip).toEqual([vip]);
      const udp = await fromOutside<{ reply: string; from: string; fromPort: number }>("udp", vip, "53");
      expect(udp.reply, vip).toBe("rb:ping");
      expect(udp.from, vip).toBe(vip);
      expect(udp.fromPort, vip).toBe(53);
    }
    // The backend saw this host's uplink address (the flow was masqueraded to come back here).
    const flows = await nkitJson<{ protocol: string; pod: string; translated: string; remote: string }[]>(
      setup.socket,
      "nat",
      "list",
    );
    expect(
      flows.some((f) => f.remote === `${R4.host}:8080` && f.translated.startsWith(`${outside.host4}:`)),
    ).toBe(true);
    const list = await nkitJson<
      {
        name: string;
        frontends: { frontend: string; external: boolean; connections: Record<string, number> }[];
      }[]
    >(setup.socket, "service", "list");
    const front = list
      .find((s) => s.name === "remote")
      ?.frontends.find((f) => f.frontend === `${REMOTE4}:80/tcp`);
    expect(front?.external).toBe(true);
    expect(front?.connections[`${R4.host}:8080`]).toBeGreaterThanOrEqual(20);
    expect(daemon.logs().filter((l) => l.level >= 50)).toEqual([]);
  });

  it("takes external VIPs from the CLI too (nkit service add --external)", async () => {
    const vip = "10.96.72.30";
    const add = await nkit(
      setup.socket,
      "service",
      "add",
      "api-remote",
      "--vip",
      `${vip}:80/tcp`,
      "--backend",
      `${R4.host}:8080`,
      "--external",
    );
    expect(add.code, add.stderr).toBe(0);
    const got = await nkitJson<{ external?: boolean }>(setup.socket, "service", "get", "api-remote");
    expect(got.external).toBe(true);
    const tcp = await fromOutside<TcpResult>("tcp", vip, "80", "5");
    expect(tcp.answers).toEqual({ rb: 5 });
    expect((await nkit(setup.socket, "service", "delete", "api-remote")).code).toBe(0);
  });

  it("a VIP down to one backend drops its Maglev table and keeps answering; a second backend brings it back", async () => {
    // local (tcp + udp) and local6 have two backends: a table each; the remote ones have one.
    expect((await maglevEntries(setup.bpffsDir)).length).toBe(3);
    await api.unwireEndpoint(`ext-p2-${process.pid}`);
    expect(await maglevEntries(setup.bpffsDir)).toEqual([]);
    for (const vip of [LOCAL4, LOCAL6]) {
      const tcp = await fromOutside<TcpResult>("tcp", vip, "80", "10");
      expect(tcp.errors, vip).toEqual({});
      expect(tcp.answers, vip).toEqual({ p1: 10 });
    }
    await wireBackendPods(scope, api, "ext", ["p3"], { app: "ext" });
    expect((await maglevEntries(setup.bpffsDir)).length).toBe(3);
    for (const vip of [LOCAL4, LOCAL6]) {
      const tcp = await fromOutside<TcpResult>("tcp", vip, "80", "60");
      expect(tcp.errors, vip).toEqual({});
      expect(Object.keys(tcp.answers).sort(), vip).toEqual(["p1", "p3"]);
    }
  });
});
