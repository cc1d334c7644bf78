// Services through a live nkitd, as users get them: a static service in nkitd.yaml selecting pods by
// label, a service file in paths.services, `nkit service add|list|get|delete`, and a client pod in
// the socket load-balancer's cgroup reaching backends in three pods through the VIPs (TCP, UDP,
// IPv4, IPv6; a service without backends refuses at once). Every VIP range is blackholed in the
// client pod, so a connection the load-balancer failed to translate dies there instead of leaving
// the host.
import { randomInt } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NkitClient } from "../../src/api/client.js";
import type * as T from "../../src/api/types.js";
import { queryCgroupAttached } from "../../src/bpf/link.js";
import { PinDir } from "../../src/bpf/pins.js";
import { inCgroup } from "../helpers/cgroup.js";
import { createNetns, type TestNetns } from "../helpers/netns.js";
import {
  Nkitd,
  type NkitdSetup,
  nkit,
  nkitdSetup,
  nkitJson,
  requireDist,
  spawnProc,
  until,
  watchMonitor,
  wireBackendPods,
} from "../helpers/nkitd.js";
import { Scope } from "../helpers/scope.js";
import { run } from "../helpers/sys.js";

const FIXTURES = join(import.meta.dirname, "..", "fixtures", "net");
const CLIENT = join(FIXTURES, "lb-client.mjs");
const VIP4 = "10.96.71.10";
const VIP6 = "fd96::71:10";
const METRICS_PORT = randomInt(40000, 50000);

const scope = new Scope();
let setup: NkitdSetup;
let daemon: Nkitd;
let api: NkitClient;
let client: TestNetns;
const backends: { name: string; ep: T.Endpoint }[] = [];

interface TcpResult {
  answers: Record<string, number>;
  errors: Record<string, number>;
  peers: string[];
}

async function clientRun<R>(...args: string[]): Promise<R> {
  const r = await inCgroup(setup.cgroup, client.path, process.execPath, [CLIENT, ...args], 60_000);
  return JSON.parse(r.stdout.trim()) as R;
}

beforeAll(async () => {
  requireDist();
  setup = await nkitdSetup(scope, "svc", [
    "services:",
    "  - name: web",
    `    vip: ${VIP4}`,
    "    ports: [{port: 80, protocol: tcp, targetPort: 8080}, {port: 53, protocol: udp, targetPort: 8080}]",
    "    selector: {app: web}",
    `metrics: {listen: "127.0.0.1:${METRICS_PORT}"}`,
  ]);
  mkdirSync(setup.servicesDir, { recursive: true });
  daemon = await Nkitd.start(scope, ["--config", setup.config]);
  api = new NkitClient(setup.socket);
  scope.defer(() => api.close());
  backends.push(...(await wireBackendPods(scope, api, "svc", ["b1", "b2", "b3"], { app: "web" })));
  client = await createNetns(scope, "cl");
  const ep = await api.wireEndpoint({ id: `svc-client-${process.pid}`, netnsPath: client.path });
  scope.defer(() => api.unwireEndpoint(ep.id).catch(() => undefined));
  for (const cidr of ["10.96.0.0/16", "fd96::/64"]) {
    await run("ip", ["-n", client.name, "route", "add", "blackhole", cidr]);
  }
}, 120_000);

afterAll(async () => {
  await scope.close();
});

describe("services through nkitd", () => {
  it("lists the static selector service with the three labelled pods as backends", async () => {
    const list = await nkitJson<Record<string, unknown>[]>(setup.socket, "service", "list");
    const web = list.find((s) => s.name === "web") as {
      source: string;
      frontends: { frontend: string; backends: string[] }[];
    };
    expect(web.source).toBe("config");
    const tcp = web.frontends.find((f) => f.frontend === `${VIP4}:80/tcp`);
    expect(tcp?.backends.sort()).toEqual(backends.map((b) => `${b.ep.addresses.ipv4}:8080`).sort());
  });

  it("spreads 3,000 TCP connections over the three backends (chi-square, p > 0.001) and shows the VIP as peer", async () => {
    const r = await clientRun<TcpResult>("tcp", VIP4, "80", "3000");
    expect(r.errors).toEqual({});
    const counts = backends.map((b) => r.answers[b.name] ?? 0);
    expect(counts.reduce((a, b) => a + b, 0)).toBe(3000);
    const chi2 = counts.reduce((s, c) => s + (c - 1000) ** 2 / 1000, 0);
    expect(chi2, `counts ${counts.join(", ")}`).toBeLessThan(13.82); // df 2, p = 0.001
    expect(r.peers).toEqual([VIP4]); // getpeername shows the VIP, not the backend
    // Every connection was counted against the backend it went to.
    const list = await nkitJson<
      { name: string; frontends: { frontend: string; connections: Record<string, number> }[] }[]
    >(setup.socket, "service", "list");
    const conns = list
      .find((s) => s.name === "web")
      ?.frontends.find((f) => f.frontend === `${VIP4}:80/tcp`)?.connections;
    expect(conns).toEqual(
      Object.fromEntries(backends.map((b, i) => [`${b.ep.addresses.ipv4}:8080`, counts[i]])),
    );
    // ... and Prometheus sees the same numbers.
    const metrics = await (await fetch(`http://127.0.0.1:${METRICS_PORT}/metrics`)).text();
    for (const [i, b] of backends.entries()) {
      const sample = `nkit_service_backend_connections_total{service="web",frontend="${VIP4}:80/tcp",backend="${b.ep.addresses.ipv4}:8080"}`;
      expect(metrics).toContain(`${sample} ${counts[i]}`);
    }
    expect(metrics).toMatch(/nkit_services\{source="config"\} 1/);
    expect(metrics).toMatch(/nkit_lb_socket_total\{reason="translated"\} \d+/);
  });

  it("answers UDP through the VIP with the VIP as the reply's source", async () => {
    const r = await clientRun<{ reply: string; from: string; fromPort: number }>("udp", VIP4, "53");
    expect(r.reply).toMatch(/^b[123]:ping$/);
    expect(r.from).toBe(VIP4);
    expect(r.fromPort).toBe(53);
  });

  it("adds, shows and deletes an API service; IPv6; a service without backends refuses at once", async () => {
    const b1 = backends[0]?.ep.addresses.ipv6 ?? "";
    const added = await nkit(
      setup.socket,
      "service",
      "add",
      "v6",
      "--vip",
      `[${VIP6}]:80/tcp`,
      "--backend",
      `[${b1}]:8080`,
    );
    expect(added.code, added.stderr).toBe(0);
    const r = await clientRun<TcpResult>("tcp", VIP6, "80", "20");
    expect(r.answers).toEqual({ b1: 20 });
    const got = await nkitJson<{ source: string }>(setup.socket, "service", "get", "v6");
    expect(got.source).toBe("api");

    expect((await nkit(setup.socket, "service", "add", "empty", "--vip", "10.96.71.20:80")).code).toBe(0);
    const refused = await clientRun<TcpResult>("tcp", "10.96.71.20", "80", "3");
    expect(refused.errors).toEqual({ ECONNREFUSED: 3 });

    const taken = await nkit(
      setup.socket,
      "service",
      "add",
      "dup",
      "--vip",
      `${VIP4}:80/tcp`,
      "--backend",
      "10.0.0.1:1",
    );
    expect(taken.code).toBe(1);
    expect(taken.stderr).toMatch(/already the frontend of service web/);

    for (const name of ["v6", "empty"])
      expect((await nkit(setup.socket, "service", "delete", name)).code).toBe(0);
    const names = (await nkitJson<{ name: string }[]>(setup.socket, "service", "list")).map((s) => s.name);
    expect(names).toEqual(["web"]);
  });

  it("refuses a VIP in serviceCIDRs that has no service at once: TCP and UDP, v4 and v6, from a pod and a bare netns, also right after a delete", async () => {
    const b1: { ipv4?: string; ipv6?: string } = backends[0]?.ep.addresses ?? {};
    // A netns in the LB cgroup with no route at all: without the refusal a connect there fails
    // with ENETUNREACH, in the client pod (VIP ranges blackholed) with EINVAL; nothing ever leaves.
    const bare = await createNetns(scope, "bare");
    const inBare = async <R>(...args: string[]): Promise<R> => {
      const r = await inCgroup(setup.cgroup, bare.path, process.execPath, [CLIENT, ...args], 60_000);
      return JSON.parse(r.stdout.trim()) as R;
    };
    const vips = [
      ["10.96.71.30", b1.ipv4 ?? ""],
      ["fd96::7130", b1.ipv6 ?? ""],
    ] as const;
    for (const [vip, backend] of vips) {
      const front = vip.includes(":") ? `[${vip}]` : vip;
      const back = backend.includes(":") ? `[${backend}]` : backend;
      const add = await nkit(
        setup.socket,
        "service",
        "add",
        "brief",
        "--vip",
        `${front}:80/tcp`,
        "--backend",
        `${back}:8080`,
      );
      expect(add.code, add.stderr).toBe(0);
      expect((await clientRun<TcpResult>("tcp", vip, "80", "2")).answers).toEqual({ b1: 2 });
      expect((await nkit(setup.socket, "service", "delete", "brief")).code).toBe(0);
      for (const [where, runIn] of [
        ["client pod", clientRun],
        ["bare netns", inBare],
      ] as const) {
        const tcp = await runIn<TcpResult>("tcp", vip, "80", "3");
        expect(tcp.errors, `${where} TCP ${vip} after delete`).toEqual({ ECONNREFUSED: 3 });
        // a port the VIP never had
        const other = await runIn<TcpResult>("tcp", vip, "8443", "1");
        expect(other.errors, `${where} TCP ${vip}:8443`).toEqual({ ECONNREFUSED: 1 });
        const udp = await runIn<{ error?: string }>("udp", vip, "53"); // never a service
        expect(udp.error, `${where} UDP ${vip}`).toBe("ECONNREFUSED");
      }
    }
    const metrics = await fetch(`http://127.0.0.1:${METRICS_PORT}/metrics`).then((r) => r.text());
    const refused = /nkit_lb_socket_total\{reason="no-service"\} (\d+)/.exec(metrics);
    expect(Number(refused?.[1] ?? 0)).toBeGreaterThanOrEqual(16);
  });

  it("nkit monitor shows the socket load-balancer's refusals with their reason and the VIP", async () => {
    const mon = await watchMonitor(setup.socket, ["DROP_LB_NO_SERVICE", "DROP_LB_NO_BACKEND"], 2);
    expect((await clientRun<TcpResult>("tcp", "10.96.71.40", "80", "1")).errors).toEqual({ ECONNREFUSED: 1 });
    expect((await nkit(setup.socket, "service", "add", "hollow", "--vip", "10.96.71.41:80")).code).toBe(0);
    expect((await clientRun<TcpResult>("tcp", "10.96.71.41", "80", "1")).errors).toEqual({ ECONNREFUSED: 1 });
    expect((await nkit(setup.socket, "service", "delete", "hollow")).code).toBe(0);
    const events = await mon.events();
    expect(events.map((e) => [e.type, e.reason, e.dst, e.family, e.protocol])).toEqual([
      ["drop", "DROP_LB_NO_SERVICE", "10.96.71.40", 4, 6],
      ["drop", "DROP_LB_NO_BACKEND", "10.96.71.41", 4, 6],
    ]);
  });

  it("applies a service file, logs a bad one with its key and keeps the rest working", async () => {
    const b2 = backends[1]?.ep.addresses.ipv4 ?? "";
    writeFileSync(
      join(setup.servicesDir, "files.yaml"),
      [
        "name: files",
        "vip: 10.96.71.30",
        "ports: [{port: 8000, targetPort: 8080}]",
        `backends: [${b2}]`,
      ].join("\n"),
    );
    writeFileSync(
      join(setup.servicesDir, "broken.yaml"),
      "name: broken\nvip: 10.96.71.31\nports: [{port: 0}]\n",
    );
    await until(
      () => daemon.logs().some((l) => l.msg === "service file applied" && l.service === "files"),
      "the service file to be applied",
      15_000,
    );
    await until(
      () => daemon.logs().some((l) => l.msg.startsWith("service file refused") && l.key === "ports[0].port"),
      "the bad service file to be logged",
      15_000,
    );
    const r = await clientRun<TcpResult>("tcp", "10.96.71.30", "8000", "10");
    expect(r.answers).toEqual({ b2: 10 });
    const web = await clientRun<TcpResult>("tcp", VIP4, "80", "30");
    expect(web.errors).toEqual({});
  });

  it("client-ip affinity keeps one client on one backend", async () => {
    const addrs = backends.map((b) => `--backend=${b.ep.addresses.ipv4}:8080`);
    const add = await nkit(
      setup.socket,
      "service",
      "add",
      "aff",
      "--vip=10.96.71.40:80/tcp",
      ...addrs,
      "--affinity=client-ip",
    );
    expect(add.code, add.stderr).toBe(0);
    const r = await clientRun<TcpResult>("tcp", "10.96.71.40", "80", "100");
    expect(r.errors).toEqual({});
    expect(Object.values(r.answers)).toEqual([100]);
    expect((await nkit(setup.socket, "service", "delete", "aff")).code).toBe(0);
  });

  it("client-ip affinity expires after its timeout: the client may move, and sticks again", async () => {
    const addrs = backends.map((b) => `--backend=${b.ep.addresses.ipv4}:8080`);
    const add = await nkit(
      setup.socket,
      "service",
      "add",
      "aff1",
      "--vip=10.96.71.42:80/tcp",
      ...addrs,
      "--affinity=client-ip",
      "--affinity-timeout=1",
    );
    expect(add.code, add.stderr).toBe(0);
    // Each round sticks to one backend; between rounds the 1 s affinity expires and the client picks
    // afresh (1 in 3 to land on the same backend: all 8 rounds alike has odds of 1 in 2,187).
    const picked: string[] = [];
    for (let round = 0; round < 8; round++) {
      const r = await clientRun<TcpResult>("tcp", "10.96.71.42", "80", "5");
      expect(r.errors).toEqual({});
      expect(Object.values(r.answers), `round ${round}`).toEqual([5]);
      picked.push(Object.keys(r.answers)[0] ?? "");
      await new Promise((res) => setTimeout(res, 1_300));
    }
    expect(new Set(picked).size, picked.join(",")).toBeGreaterThan(1);
    expect((await nkit(setup.socket, "service", "delete", "aff1")).code).toBe(0);
  });

  it("a removed backend gets no new connections while 50 live ones to it and the others survive", async () => {
    const file = join(setup.servicesDir, "churn.yaml");
    const write = (n: number) =>
      writeFileSync(
        file,
        [
          "name: churn",
          "vip: 10.96.71.50",
          "ports: [{port: 80, targetPort: 8080}, {port: 81, targetPort: 8081}]",
          `backends: [${backends
            .slice(0, n)
            .map((b) => b.ep.addresses.ipv4)
            .join(", ")}]`,
        ].join("\n"),
      );
    const applied = () =>
      daemon.logs().filter((l) => l.msg === "service file applied" && l.service === "churn").length;
    write(3);
    await until(() => applied() === 1, "the churn service file to be applied", 15_000);
    const live = spawnProc(
      "sh",
      [
        "-c",
        'echo $$ > "$0/cgroup.procs" && exec "$@"',
        setup.cgroup,
        "nsenter",
        `--net=${client.path}`,
        "--",
        process.execPath,
        CLIENT,
        "live",
        "10.96.71.50",
        "81",
        "50,3000",
      ],
      scope,
    );
    await until(() => live.out().includes("open"), "50 live connections", 15_000, live.running);
    write(2); // b3 leaves the service
    await until(() => applied() === 2, "the changed churn service file to be applied", 15_000);
    const fresh = await clientRun<TcpResult>("tcp", "10.96.71.50", "80", "300");
    expect(fresh.errors).toEqual({});
    expect(Object.keys(fresh.answers).sort()).toEqual(["b1", "b2"]);
    const done = await live.done;
    const held = JSON.parse(done.stdout.split("\n")[1] ?? "{}") as {
      answers: Record<string, number>;
      errors: Record<string, number>;
    };
    expect(held.errors).toEqual({});
    expect(Object.values(held.answers).reduce((a, b) => a + b, 0)).toBe(50);
    expect(held.answers.b3 ?? 0, "live connections to the removed backend").toBeGreaterThan(0);
  });

  it("keeps translating while nkitd is down and after a restart; removing the pins leaves no attachment", async () => {
    expect((await daemon.stop()).code).toBe(0);
    const down = await clientRun<TcpResult>("tcp", VIP4, "80", "30");
    expect(down.errors).toEqual({});
    daemon = await Nkitd.start(scope, ["--config", setup.config]);
    // The links were adopted and their programs swapped, not attached twice.
    expect(queryCgroupAttached(setup.cgroup, "connect4").programs).toHaveLength(1);
    const again = await clientRun<TcpResult>("tcp", VIP4, "80", "30");
    expect(again.errors).toEqual({});
    await daemon.stop();
    new PinDir(setup.bpffsDir).remove("lb");
    const hooks = [
      "connect4",
      "connect6",
      "sendmsg4",
      "sendmsg6",
      "recvmsg4",
      "recvmsg6",
      "getpeername4",
      "getpeername6",
    ] as const;
    // The kernel releases an unpinned link from a deferred work item, so detachment can trail the
    // unlink by a moment.
    const attached = () => hooks.filter((h) => queryCgroupAttached(setup.cgroup, h).programs.length > 0);
    await until(() => attached().length === 0, "the cgroup links to detach", 5_000).catch(() => undefined);
    expect(attached()).toEqual([]);
  });
});
