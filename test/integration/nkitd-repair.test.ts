// Fault injection: a pod's host device deleted behind nkitd's back (by an operator, a script, the
// pod itself), an uplink deleted and made again, an endpoint's programs removed with tc, the whole
// bpffs dir and run dir removed, a truncated IPAM state file. While nkitd runs, the pod is wired
// again within seconds with its id, addresses and labels, and pins and sockets come back; with nkitd
// stopped, the next start wires it again. Either way the pod answers on its old addresses and no
// second device, map entry or address is left.
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NkitClient } from "../../src/api/client.js";
import type { Endpoint } from "../../src/api/types.js";
import { pinnedMapInfo } from "../../src/bpf/map.js";
import { fileNameOfKey } from "../../src/state/json-store.js";
import { createNetns, type TestNetns } from "../helpers/netns.js";
import {
  doctorCheck,
  endpointFilters,
  Nkitd,
  type NkitdSetup,
  nkit,
  nkitdSetup,
  pinnedLink,
  requireDist,
  startNetFixture,
} from "../helpers/nkitd.js";
import { Scope } from "../helpers/scope.js";
import { run } from "../helpers/sys.js";

const scope = new Scope();
let setup: NkitdSetup;
let nkitd: Nkitd;
let api: NkitClient;
let pod: TestNetns;
let ep: Endpoint;
const PORT = 7095;

/** What the pod's echo server answers a host connection with (the client's address), or "error:...". */
async function reach(address: string): Promise<string> {
  const js = `const s = require("node:net").connect({ host: process.argv[1], port: ${PORT}, timeout: 3000 });
let out = ""; s.on("data", (d) => (out += d)); s.on("end", () => process.stdout.write(out));
s.on("error", (e) => process.stdout.write("error:" + e.code)); s.on("timeout", () => { process.stdout.write("error:timeout"); s.destroy(); });`;
  return (await run(process.execPath, ["-e", js, address])).stdout;
}

const cniSocket = () => join(setup.runDir, "cni.sock");

const devices = async () =>
  (await run("ip", ["-o", "link", "show"])).stdout.split("\n").filter((l) => l.includes(ep.hostIfName));

beforeAll(async () => {
  requireDist();
  setup = await nkitdSetup(scope, "rep");
  nkitd = await Nkitd.start(scope, ["--config", setup.config]);
  api = new NkitClient(setup.socket);
  scope.defer(() => api.close());
  pod = await createNetns(scope, "rpod");
  ep = await api.wireEndpoint({ id: `rep-${process.pid}`, netnsPath: pod.path, labels: { app: "repair" } });
  scope.defer(() => api.unwireEndpoint(ep.id).catch(() => undefined));
  await startNetFixture(scope, pod.path, "peer-echo.mjs", [String(PORT)]);
}, 60_000);

afterAll(() => scope.close(), 60_000);

describe("a pod's host device deleted behind nkitd's back", () => {
  it("is wired again while nkitd runs: same addresses and labels, one device", async () => {
    expect(await reach(ep.addresses.ipv4)).not.toMatch(/^error/);
    await run("ip", ["link", "del", ep.hostIfName]);
    expect(await reach(ep.addresses.ipv4)).toMatch(/^error/);
    const deadline = Date.now() + 15_000;
    // Absent for a moment while the repair wires it again.
    const current = () =>
      api.getEndpoint(ep.id).then(
        (r) => r.endpoint,
        () => ep,
      );
    let again = await current();
    while (again.hostIfindex === ep.hostIfindex && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      again = await current();
    }
    expect(again.hostIfindex).not.toBe(ep.hostIfindex);
    expect(again.addresses).toEqual(ep.addresses);
    expect(again.labels).toEqual(ep.labels);
    expect(await reach(ep.addresses.ipv4)).not.toMatch(/^error/);
    expect(await reach(ep.addresses.ipv6)).not.toMatch(/^error/);
    expect(await devices()).toHaveLength(1);
    expect(nkitd.log("an endpoint's host device was gone: wired it again")).toMatchObject({ id: ep.id });
    ep = again;
  });

  it("is wired again by the next start when it went while nkitd was down", async () => {
    await nkitd.stop();
    await run("ip", ["link", "del", ep.hostIfName]);
    nkitd = await Nkitd.start(scope, ["--config", setup.config]);
    const again = (await api.getEndpoint(ep.id)).endpoint;
    expect(again.hostIfindex).not.toBe(ep.hostIfindex);
    expect(again.addresses).toEqual(ep.addresses);
    expect(await reach(ep.addresses.ipv4)).not.toMatch(/^error/);
    expect(await devices()).toHaveLength(1);
    expect((await api.listEndpoints()).endpoints.map((e) => e.id)).toContain(ep.id);
  });

  it("one that cannot be wired again (its eth0 taken) is reported by status and doctor, and repaired once it can", async () => {
    await run("ip", ["link", "del", ep.hostIfName]);
    // Something in the pod took eth0 before nkitd's next check.
    await run("ip", ["-n", pod.name, "link", "add", "eth0", "type", "veth", "peer", "name", "squat"]);
    const problems = async () => (await api.status()).endpointProblems;
    const deadline = Date.now() + 15_000;
    while ((await problems()).length === 0 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 200));
    expect(await problems()).toEqual([{ id: ep.id, problem: expect.stringContaining("eth0") }]);
    expect((await nkit(setup.socket, "status")).stdout).toMatch(
      new RegExp(`^BROKEN: +${ep.id}: its host device vanished and wiring it again failed`, "m"),
    );
    expect(await doctorCheck(setup.socket, "endpoints intact")).toMatchObject({
      status: "warn",
      detail: expect.stringContaining(ep.id),
    });
    await run("ip", ["-n", pod.name, "link", "del", "eth0"]);
    const until2 = Date.now() + 15_000;
    while ((await problems()).length > 0 && Date.now() < until2) await new Promise((r) => setTimeout(r, 200));
    expect(await problems()).toEqual([]);
    expect(await reach(ep.addresses.ipv4)).not.toMatch(/^error/);
  });

  it("an uplink deleted and made again gets nk_from_uplink back", async () => {
    const pin = join(setup.bpffsDir, "uplinks", setup.uplink, "from-uplink");
    const ifindex = async () =>
      (
        JSON.parse((await run("ip", ["-j", "link", "show", "dev", setup.uplink])).stdout) as {
          ifindex: number;
        }[]
      )[0]!.ifindex;
    expect(pinnedLink(pin)).toMatchObject({ attached: true, ifindex: await ifindex() });
    await run("ip", ["link", "del", setup.uplink]);
    await run("ip", ["link", "add", setup.uplink, "type", "veth", "peer", "name", `${setup.uplink}p`]);
    await run("ip", ["link", "set", setup.uplink, "up"]);
    const now = await ifindex();
    const deadline = Date.now() + 15_000;
    const attachedTo = () => {
      try {
        const l = pinnedLink(pin);
        return l.attached ? l.ifindex : undefined;
      } catch {
        return undefined;
      }
    };
    while (attachedTo() !== now && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    expect(attachedTo()).toBe(now);
    expect(nkitd.log("an uplink came back without nk_from_uplink: attached it again")).toMatchObject({
      uplink: setup.uplink,
    });
  });

  it("an endpoint whose programs were removed by hand (tc) gets them attached again", async () => {
    ep = (await api.getEndpoint(ep.id)).endpoint;
    const attached = async () => {
      const f = await endpointFilters(ep.hostIfindex);
      return f.from.length === 1 && f.to.length === 1;
    };
    expect(await attached()).toBe(true);
    await run("tc", ["filter", "del", "dev", ep.hostIfName, "ingress"]);
    await run("tc", ["filter", "del", "dev", ep.hostIfName, "egress"]);
    expect(await attached()).toBe(false);
    const deadline = Date.now() + 15_000;
    while (!(await attached()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    expect(await attached()).toBe(true);
    expect(nkitd.log("an endpoint's programs were gone: attached them again")).toMatchObject({ id: ep.id });
    expect(await reach(ep.addresses.ipv4)).not.toMatch(/^error/);
  });

  it("the bpffs dir and the run dir removed under a running nkitd: every pin and socket is back, the maps are the same", async () => {
    const pins = () =>
      (readdirSync(setup.bpffsDir, { recursive: true }) as string[])
        .map((p) => join(setup.bpffsDir, p))
        .filter((p) => statSync(p).isFile())
        .sort();
    const mapId = (p: string): number | undefined => {
      try {
        return pinnedMapInfo(p).id;
      } catch {
        return undefined; // a link pin
      }
    };
    const before = pins();
    const maps = new Map(before.flatMap((p) => (mapId(p) === undefined ? [] : [[p, mapId(p)] as const])));
    // The datapath's and the load-balancer's maps, the endpoint's, uplink's and cgroup links.
    expect(maps.has(join(setup.bpffsDir, "nk_endpoints"))).toBe(true);
    expect(maps.has(join(setup.bpffsDir, "nk_lb_services"))).toBe(true);
    expect(before.some((p) => p.includes(`${join(setup.bpffsDir, "lb")}/`))).toBe(true);
    expect(before.length - maps.size).toBeGreaterThanOrEqual(4);
    rmSync(setup.bpffsDir, { recursive: true, force: true });
    rmSync(setup.runDir, { recursive: true, force: true });
    const deadline = Date.now() + 15_000;
    const back = () =>
      before.every((p) => existsSync(p)) && existsSync(setup.socket) && existsSync(cniSocket());
    while (!back() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    expect(
      before.filter((p) => !existsSync(p)),
      nkitd.output().slice(-3000),
    ).toEqual([]);
    expect(existsSync(cniSocket()), nkitd.output().slice(-3000)).toBe(true);
    for (const [p, id] of maps) expect([p, mapId(p)]).toEqual([p, id]);
    for (const sock of [setup.socket, cniSocket()]) expect(statSync(sock).mode & 0o777).toBe(0o600);
    expect((await api.status()).endpointCount).toBeGreaterThanOrEqual(1);
    expect((await nkit(setup.socket, "status")).code).toBe(0);
    expect(await reach(ep.addresses.ipv4)).not.toMatch(/^error/);
    for (const line of [
      "the datapath's map pins were removed: pinned them again",
      "the load-balancer's pins were removed: pinned them again",
      "the CNI socket was gone: listening again",
      "the API socket was gone: listening again",
    ]) {
      expect(nkitd.log(line), line).toBeDefined();
    }
    // The next nkitd takes the same maps from the pins again: nothing was lost.
    await nkitd.stop();
    nkitd = await Nkitd.start(scope, ["--config", setup.config]);
    for (const [p, id] of maps) expect([p, mapId(p)]).toEqual([p, id]);
    expect(await reach(ep.addresses.ipv4)).not.toMatch(/^error/);
  });

  it("every other state file unreadable (truncated, or not nkit's shape) is refused naming it and the way out; nothing is touched", async () => {
    // A service added through the API, so the service store holds something of the user's.
    expect((await nkit(setup.socket, "service", "add", "rep-svc", "--vip", "10.96.93.9:80")).code).toBe(0);
    await nkitd.stop();
    const files: [string, RegExp][] = [
      [join("services", "rep-svc.json"), /services added with `nkit service add` must be added again/],
      [join("cni-attachments", "c0ffee.json"), /restore it from a backup/],
      [join("endpoints", `${ep.hostIfName}.json`), /restore it from a backup/],
    ];
    for (const [name, fix] of files) {
      const file = join(setup.stateDir, name);
      const good = existsSync(file) ? readFileSync(file, "utf8") : undefined;
      for (const bad of [good?.slice(0, Math.floor(good.length / 2)) ?? "{", '{"version": 1, "x": []}\n']) {
        writeFileSync(file, bad);
        const refused = Nkitd.spawn(scope, ["--config", setup.config]);
        const exit = await refused.proc.done;
        expect([name, exit.code]).toEqual([name, 1]);
        expect(refused.output()).toContain(`state file ${file} is unreadable (`);
        expect(refused.output()).toMatch(fix);
        // The pinned datapath carries the pod meanwhile, and nkitd left the pod's device alone.
        expect(await reach(ep.addresses.ipv4)).not.toMatch(/^error/);
        expect(await devices()).toHaveLength(1);
      }
      if (good === undefined) rmSync(file);
      else writeFileSync(file, good);
    }
    nkitd = await Nkitd.start(scope, ["--config", setup.config]);
    expect((await api.getEndpoint(ep.id)).endpoint.addresses).toEqual(ep.addresses);
    expect((await nkit(setup.socket, "service", "get", "rep-svc")).code).toBe(0);
    expect((await nkit(setup.socket, "service", "delete", "rep-svc")).code).toBe(0);
  });

  it("a truncated IPAM allocation is refused with the way out, the pods keep forwarding, the restored file is taken", async () => {
    await nkitd.stop();
    const file = join(setup.stateDir, "ipam", `${fileNameOfKey(ep.id)}.json`);
    const good = readFileSync(file, "utf8");
    writeFileSync(file, good.slice(0, Math.floor(good.length / 2)));
    const refused = Nkitd.spawn(scope, ["--config", setup.config]);
    const exit = await refused.proc.done;
    expect(exit.code).toBe(1);
    expect(refused.output()).toContain(`${file} is unreadable (invalid JSON); restore it from a backup`);
    // Nothing was touched: the pinned datapath still carries the pod.
    expect(await reach(ep.addresses.ipv4)).not.toMatch(/^error/);
    expect(await devices()).toHaveLength(1);
    writeFileSync(file, good);
    nkitd = await Nkitd.start(scope, ["--config", setup.config]);
    expect((await api.getEndpoint(ep.id)).endpoint.addresses).toEqual(ep.addresses);
  });
});
