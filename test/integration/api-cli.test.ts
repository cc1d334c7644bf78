// The nkitd API and every nkit CLI command against a live nkitd from dist/ (temp config, unique
// bpffs/state/run dirs): socket permissions, --json contents, a real drop event through the
// nk_events ring buffer, the metrics endpoint, doctor verdicts and exit codes.

import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NkitClient } from "../../src/api/client.js";
import type * as T from "../../src/api/types.js";
import { PinDir } from "../../src/bpf/pins.js";
import { createTestCgroup } from "../helpers/cgroup.js";
import { uniqueBpffsDir, uniqueIfName } from "../helpers/names.js";
import { createNetns, type TestNetns } from "../helpers/netns.js";
import { spawnProc } from "../helpers/nkitd.js";
import { type Exit, spawnNode, waitFor } from "../helpers/process.js";
import { Scope } from "../helpers/scope.js";
import { inNetns, run } from "../helpers/sys.js";

const ROOT = join(import.meta.dirname, "..", "..");
const NKIT = join(ROOT, "dist", "cli", "main.js");
const NKITD = join(ROOT, "dist", "daemon", "main.js");

const scope = new Scope();
let socket = "";
let runDir = "";
let metricsAddr = "";
let cidr4 = "";
let client: NkitClient;
let daemon: ReturnType<typeof spawnNode>;
let podA: TestNetns;
let podB: TestNetns;
let epA: T.Endpoint;
let epB: T.Endpoint;
const idA = `api-a-${process.pid}`;
const idB = `api-b-${process.pid}`;

async function nkit(...args: string[]): Promise<Exit> {
  return spawnNode([NKIT, "--socket", socket, ...args]).done;
}

async function nkitJson<J>(...args: string[]): Promise<J> {
  const r = await nkit(...args, "--json");
  expect(r.code, `nkit ${args.join(" ")}: ${r.stderr}`).toBe(0);
  return JSON.parse(r.stdout) as J;
}

beforeAll(async () => {
  if (!existsSync(NKITD)) throw new Error("dist/ is missing: run `npm run build` first");
  const dir = mkdtempSync(join(tmpdir(), "nkit-api-"));
  scope.defer(() => rmSync(dir, { recursive: true, force: true }));
  const bpffsDir = uniqueBpffsDir("api");
  scope.defer(() => new PinDir(bpffsDir).removeAll());
  const uplink = uniqueIfName("u");
  await run("ip", ["link", "add", uplink, "type", "veth", "peer", "name", `${uplink}p`]);
  scope.defer(() => run("ip", ["link", "del", uplink]).catch(() => undefined));
  runDir = join(dir, "run");
  socket = join(runDir, "nkit.sock");
  cidr4 = `10.233.${(process.pid % 200) + 10}.0/24`;
  const file = join(dir, "nkitd.yaml");
  writeFileSync(
    file,
    [
      "datapath: auto",
      `podCIDRs: [${cidr4}, "fd33:${(process.pid % 0xfff).toString(16)}::/64"]`,
      `uplinks: [${uplink}]`,
      `paths: {state: ${join(dir, "state")}, run: ${runDir}, bpffs: ${bpffsDir}, cgroup: ${createTestCgroup(scope, "api")}}`,
      "nri: {enabled: false}",
      'metrics: {listen: "127.0.0.1:0"}',
      "log: {level: info}",
    ].join("\n"),
  );
  // A stale socket from a crashed nkitd must not stop the next one.
  execFileSync("mkdir", ["-p", runDir]);
  execFileSync("python3", [
    "-c",
    `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(socket)})`,
  ]);
  expect(statSync(socket).isSocket()).toBe(true);

  daemon = spawnNode([NKITD, "--config", file]);
  scope.defer(async () => {
    daemon.child.kill("SIGTERM");
    await daemon.done;
  });
  await waitFor(
    () => daemon.out().includes("nkitd running") || daemon.child.exitCode !== null,
    "nkitd to start",
  );
  expect(daemon.child.exitCode, daemon.out() + daemon.err()).toBeNull();
  const line = daemon
    .out()
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { msg: string; listen?: string })
    .find((l) => l.msg === "metrics listening");
  metricsAddr = line?.listen ?? "";
  client = new NkitClient(socket);
  scope.defer(() => client.close());

  podA = await createNetns(scope, "apia");
  podB = await createNetns(scope, "apib");
  epA = await client.wireEndpoint({ id: idA, netnsPath: podA.path, labels: { app: "a" } });
  scope.defer(() => client.unwireEndpoint(idA).catch(() => undefined));
  epB = await client.wireEndpoint({ id: idB, netnsPath: podB.path });
  scope.defer(() => client.unwireEndpoint(idB).catch(() => undefined));
});

afterAll(() => scope.close());

describe("nkitd API socket", () => {
  it("replaced the stale socket and serves on a root-only 0600 socket", () => {
    const st = statSync(socket);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.uid).toBe(0);
  });

  it("maps errors to gRPC codes with the nkit code", async () => {
    await expect(client.getEndpoint("no-such-endpoint")).rejects.toMatchObject({
      grpcCode: 5, // NOT_FOUND
      nkitCode: "NKIT_NOT_FOUND",
    });
    await expect(client.dumpMap("nope")).rejects.toMatchObject({ nkitCode: "NKIT_NOT_FOUND" });
  });
});

describe("nkit CLI against a live nkitd", () => {
  it("status --json", async () => {
    const s = await nkitJson<T.StatusResponse & { pools: { cidr: string; size: number; used: number }[] }>(
      "status",
    );
    expect(s.datapathMode).toBe("veth");
    expect(s.endpointCount).toBe(2);
    expect(s.uptimeSeconds).toBeGreaterThan(0);
    expect(s.pools.find((p) => p.cidr === cidr4)).toMatchObject({ family: 4, size: 254, used: 2 });
    expect(s.probes.find((p) => p.name === "netkit")?.supported).toBe(false);
    expect(s.probes.find((p) => p.name === "tcx")?.supported).toBe(true);
    expect(s.metricsListen).toBe(metricsAddr);
    expect(s).toMatchObject({ servicesEnabled: true, serviceCount: 0, frontendCount: 0 });
    const text = await nkit("status");
    expect(text.stdout).toMatch(/datapath:\s+veth/);
    expect(text.stdout).toMatch(/services:\s+0 \(0 frontends\)/);
  });

  it("endpoint list --json and endpoint get --json", async () => {
    const list = await nkitJson<T.Endpoint[]>("endpoint", "list");
    const a = list.find((e) => e.id === idA);
    expect(a).toMatchObject({
      epNum: epA.epNum,
      mode: "veth",
      hostIfName: epA.hostIfName,
      podIfName: "eth0",
      netnsPath: podA.path,
      labels: { app: "a" },
    });
    expect(a?.addresses.ipv4).toBe(epA.addresses.ipv4);
    expect(list.map((e) => e.id)).toContain(idB);
    const got = await nkitJson<{ endpoint: T.Endpoint; counters: { reason: string; packets: number }[] }>(
      "endpoint",
      "get",
      idA,
    );
    expect(got.endpoint.id).toBe(idA);
    expect(Array.isArray(got.counters)).toBe(true);
    const missing = await nkit("endpoint", "get", "nope");
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/NKIT_NOT_FOUND/);
  });

  it("ipam --json", async () => {
    const r = await nkitJson<{
      pools: { cidr: string; used: number }[];
      allocations: { id: string; ipv4?: string }[];
    }>("ipam");
    expect(r.pools.find((p) => p.cidr === cidr4)?.used).toBe(2);
    expect(r.allocations).toContainEqual(expect.objectContaining({ id: idA, ipv4: epA.addresses.ipv4 }));
    expect(r.allocations).toContainEqual(expect.objectContaining({ id: idB, ipv4: epB.addresses.ipv4 }));
  });

  it("bpf map list --json and bpf map dump --json", async () => {
    const maps = await nkitJson<T.MapInfo[]>("bpf", "map", "list");
    expect(maps.map((m) => m.name)).toEqual(["nk_endpoints", "nk_devices", "nk_counters", "nk_events"]);
    expect(maps.find((m) => m.name === "nk_endpoints")).toMatchObject({
      type: "hash",
      keySize: 20,
      valueSize: 24,
      entries: 4,
    });
    expect(maps.find((m) => m.name === "nk_events")).toMatchObject({ type: "ringbuf", dumpable: false });
    const dump = await nkitJson<{
      entries: {
        key: { family: number; addr: string };
        value: { ifindex: number; ep_id: number; flags: string[] };
      }[];
    }>("bpf", "map", "dump", "nk_endpoints");
    expect(dump.entries).toContainEqual({
      key: { family: 4, addr: epA.addresses.ipv4 },
      value: expect.objectContaining({ ifindex: epA.hostIfindex, ep_id: epA.epNum, flags: ["L2"] }),
    });
    const devs = await nkitJson<{ entries: { key: { ifindex: number }; value: { ep_id: number } }[] }>(
      "bpf",
      "map",
      "dump",
      "nk_devices",
    );
    expect(devs.entries).toContainEqual({ key: { ifindex: epB.hostIfindex }, value: { ep_id: epB.epNum } });
    const ring = await nkit("bpf", "map", "dump", "nk_events");
    expect(ring.code).toBe(1);
    expect(ring.stderr).toMatch(/ring buffer/);
  });

  it("monitor receives a real drop event (spoofed source) with endpoint and addresses", async () => {
    const mon = spawnNode([
      NKIT,
      "--socket",
      socket,
      "monitor",
      "--json",
      "--endpoint",
      idA,
      "--reason",
      "DROP_SPOOFED_SOURCE",
      "--count",
      "2",
    ]);
    await waitFor(() => mon.err().includes("monitoring"), "monitor to subscribe");
    const spoofed = epA.addresses.ipv4!.replace(/\.\d+$/, ".250");
    await inNetns(podA.path, "ip", ["addr", "add", `${spoofed}/32`, "dev", "eth0"]);
    await expect(
      inNetns(podA.path, "ping", [
        "-c",
        "3",
        "-i",
        "0.2",
        "-W",
        "1",
        "-q",
        "-I",
        spoofed,
        epB.addresses.ipv4!,
      ]),
    ).rejects.toThrow();
    const exit = await Promise.race([
      mon.done,
      new Promise<Exit>((_, rej) => setTimeout(() => rej(new Error(`monitor got: ${mon.out()}`)), 15_000)),
    ]);
    expect(exit.code, exit.stderr).toBe(0);
    const events = exit.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as T.Event);
    expect(events).toHaveLength(2);
    expect(events[0]).toMatchObject({
      type: "drop",
      reason: "DROP_SPOOFED_SOURCE",
      reasonCode: 64,
      endpointId: idA,
      epNum: epA.epNum,
      ifindex: epA.hostIfindex,
      family: 4,
      src: spoofed,
      dst: epB.addresses.ipv4,
      protocol: 1,
      length: 98,
    });
    expect(Date.now() - Date.parse(events[0]!.time)).toBeLessThan(60_000);
  });

  it("monitor rejects an unknown reason (usage, exit 2) and an unknown endpoint (exit 1)", async () => {
    expect((await nkit("monitor", "--reason", "bogus")).code).toBe(2);
    const r = await nkit("monitor", "--endpoint", "nope");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/NKIT_NOT_FOUND/);
  });

  it("metrics endpoint and Metrics RPC return the BPF counters per endpoint and reason", async () => {
    const res = await fetch(`http://${metricsAddr}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/text\/plain; version=0.0.4/);
    const text = await res.text();
    const m = new RegExp(
      `nkit_datapath_packets_total\\{endpoint="${idA}",reason="DROP_SPOOFED_SOURCE"\\} (\\d+)`,
    ).exec(text);
    expect(Number(m?.[1])).toBeGreaterThanOrEqual(3);
    expect(text).toMatch(
      new RegExp(`nkit_datapath_bytes_total\\{endpoint="${idA}",reason="DROP_SPOOFED_SOURCE"\\} \\d+`),
    );
    expect(text).toMatch(/nkit_endpoint_wiring_duration_seconds_count\{op="wire",result="ok"\} [2-9]/);
    expect(text).toMatch(
      new RegExp(`nkit_ipam_addresses_used\\{cidr="${cidr4.replace(/\./g, "\\.")}",family="4"\\} 2`),
    );
    expect(text).toMatch(/nkit_nri_events_total/);
    expect(text).toMatch(/nkit_endpoints\{mode="veth"\} 2/);
    expect((await client.metrics()).text).toMatch(/nkit_datapath_packets_total\{endpoint=/);
    expect((await fetch(`http://${metricsAddr}/nope`)).status).toBe(404);
  });

  it("doctor --json: netkit unavailable with the veth fallback, required checks pass (exit 0)", async () => {
    const r = await nkit(
      "doctor",
      "--json",
      "--cni-conf-dir",
      "/nonexistent-cni",
      "--containerd-config",
      "/nonexistent.toml",
    );
    expect(r.code, r.stderr).toBe(0);
    const d = JSON.parse(r.stdout) as {
      ok: boolean;
      checks: { name: string; status: string; required: boolean; detail: string; fix: string }[];
    };
    expect(d.ok).toBe(true);
    const byName = new Map(d.checks.map((c) => [c.name, c]));
    expect(byName.get("netkit")).toMatchObject({ status: "warn", required: false });
    expect(byName.get("netkit")?.detail).toMatch(/veth \+ tc fallback in use/);
    expect(byName.get("netkit")?.fix).toMatch(/CONFIG_NETKIT/);
    expect(byName.get("tcx")?.status).toBe("pass");
    expect(byName.get("bpffs")?.status).toBe("pass");
    expect(byName.get("nkitd reachable")).toMatchObject({ status: "pass", required: true });
    expect(byName.get("CNI config")).toMatchObject({ status: "warn" });
    expect(byName.get("containerd NRI")?.fix).toMatch(/disable = false/);
    for (const n of ["BTF", "cgroup2", "BIG TCP", "containerd", "CNI plugin"])
      expect(byName.has(n), n).toBe(true);
    // nkitd's only uplink is the test veth, which carries no IPv6 default route
    expect(byName.get("IPv6 to the outside")).toMatchObject({ status: "warn", required: false });
    expect(byName.get("IPv6 to the outside")?.detail).toMatch(/no IPv6 default route through nkit's uplinks/);
    expect(byName.get("IPv6 to the outside")?.fix).toMatch(/no forwarding sysctl is needed/);
  });

  it("doctor's IPv6 check passes with an IPv6 default route and a global address, and names what is missing", async () => {
    const ns = await createNetns(scope, "d6");
    const dev = "nkd6";
    await run("ip", ["-n", ns.name, "link", "add", dev, "type", "veth", "peer", "name", `${dev}p`]);
    await run("ip", ["-n", ns.name, "link", "set", dev, "up"]);
    await run("ip", ["-n", ns.name, "link", "set", `${dev}p`, "up"]);
    await run("ip", ["-n", ns.name, "addr", "add", "fd6e::2/64", "dev", dev, "nodad"]);
    await run("ip", ["-n", ns.name, "route", "add", "default", "via", "fd6e::1", "dev", dev]);
    const doctor = async () => {
      const r = await spawnProc("nsenter", [
        `--net=${ns.path}`,
        "--",
        process.execPath,
        NKIT,
        "--socket",
        join(runDir, "absent.sock"),
        "doctor",
        "--json",
      ]).done;
      const d = JSON.parse(r.stdout) as { checks: { name: string; status: string; detail: string }[] };
      return d.checks.find((c) => c.name === "IPv6 to the outside");
    };
    const ok = await doctor();
    expect(ok?.status).toBe("pass");
    expect(ok?.detail).toMatch(/via nkd6; masqueraded IPv6 leaves as fd6e::2.*no global sysctl/);
    await run("ip", ["-n", ns.name, "addr", "del", "fd6e::2/64", "dev", dev]);
    await run("ip", ["-n", ns.name, "route", "add", "default", "dev", dev]).catch(() => undefined);
    const noAddr = await doctor();
    expect(noAddr?.status).toBe("warn");
    expect(noAddr?.detail).toMatch(/no global IPv6 address/);
  });

  it("doctor exits 4 when a required check fails (nkitd unreachable)", async () => {
    const r = await spawnNode([NKIT, "--socket", join(runDir, "absent.sock"), "doctor"]).done;
    expect(r.code).toBe(4);
    expect(r.stdout).toMatch(/fail {2}nkitd reachable/);
  });

  it("exit codes: 3 when nkitd is unreachable, 2 on usage errors", async () => {
    const r = await spawnNode([NKIT, "--socket", join(runDir, "absent.sock"), "status"]).done;
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/not reachable/);
    expect((await nkit("endpoint", "get")).code).toBe(2);
    expect((await nkit("bogus")).code).toBe(2);
  });

  it("unwires through the admin API", async () => {
    const extra = await createNetns(scope, "apic");
    const id = `api-c-${process.pid}`;
    await client.wireEndpoint({
      id,
      netnsPath: extra.path,
      addresses: { ipv4: cidr4.replace(/0\/24$/, "77"), ipv6: "" },
    });
    expect((await nkitJson<T.Endpoint[]>("endpoint", "list")).map((e) => e.id)).toContain(id);
    expect(await client.unwireEndpoint(id)).toEqual({ removed: true });
    expect(await client.unwireEndpoint(id)).toEqual({ removed: false });
    expect((await nkitJson<T.Endpoint[]>("endpoint", "list")).map((e) => e.id)).not.toContain(id);
  });
});
