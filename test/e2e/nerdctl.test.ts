// Real nerdctl (v2.4.2) on nkit, against the lane's private containerd (NKIT_E2E_CONTAINERD=1.7|2) and a
// real nkitd, through the conflist `nkit install` wrote: the same network serves CRI pods (NRI) and
// nerdctl containers (wired at ADD, from nerdctl's OCI hooks).

import { writeFileSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RUN_ID } from "../helpers/names.js";
import { type ContainerdEnv, laneFromEnv, startContainerd, waitFor } from "./env/index.js";
import { Nerdctl } from "./env/nerdctl.js";
import {
  type EndpointJson,
  leftovers,
  type Nkitd,
  nkitCni,
  nkitContainerdOptions,
  nkitdEmpty,
  startNkitd,
  uniqueNkitNetwork,
} from "./env/nkit.js";

const lane = laneFromEnv();
const network = uniqueNkitNetwork();
const tag = `${RUN_ID}${process.pid.toString(36)}`.replace(/[^a-zA-Z0-9]/g, "");

interface Container {
  name: string;
  /** containerd's container id (64 hex). */
  id: string;
  /** The CNI container id nerdctl uses: <namespace>-<id>. */
  cniId: string;
  ep: EndpointJson;
}

/** GET http://host:port/ from the host; resolves with the body, rejects on error or timeout. */
function httpGet(host: string, port: number, timeoutMs = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path: "/", timeout: timeoutMs, agent: false }, (res) => {
      let body = "";
      res.on("data", (d: Buffer) => {
        body += d.toString();
      });
      res.on("end", () => resolve(body));
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${host}:${port} timed out`)));
    req.on("error", reject);
    req.end();
  });
}

describe(`nerdctl on nkit, containerd lane ${lane}`, () => {
  let env: ContainerdEnv | undefined;
  let nkitd: Nkitd | undefined;
  let nerdctl: Nerdctl;
  let image: string;

  beforeAll(async () => {
    // nerdctl makes its default "bridge" network on first use, so it needs the bridge chain's plugins.
    const opts = nkitContainerdOptions(lane, "nerdctl", network);
    env = await startContainerd({
      ...opts,
      cni: {
        ...nkitCni(network),
        systemPlugins: ["loopback", "bridge", "host-local", "portmap", "firewall", "tuning"],
      },
    });
    nkitd = await startNkitd(env);
    await nkitd.waitNri();
    nerdctl = new Nerdctl(env, `nkt${tag}`);
    env.defer(() => nerdctl.removeAll());
    image = await nerdctl.loadBusybox();
  });

  afterAll(async () => {
    await env?.stop();
  });

  async function endpointOf(cniId: string): Promise<EndpointJson> {
    return waitFor(`endpoint ${cniId}`, async () => {
      const eps = await nkitd!.cli<EndpointJson[]>(["endpoint", "list"]);
      return eps.find((e) => e.id === cniId);
    });
  }

  async function run(name: string, args: string[], cmd: string[]): Promise<Container> {
    const id = (
      await nerdctl.ok(["run", "-d", "--name", name, "--network", network, ...args, image, ...cmd])
    ).trim();
    const cniId = `${nerdctl.namespace}-${id}`;
    nkitd!.track(cniId);
    return { name, id, cniId, ep: await endpointOf(cniId) };
  }

  const sleeper = ["sleep", "3600"];
  const web = (text: string) => [
    "sh",
    "-c",
    `mkdir -p /www && echo ${text} > /www/index.html && exec httpd -f -p 80 -h /www`,
  ];

  it("lists the nkit network, and two containers talk over IPv4 and IPv6, by address and by name", async () => {
    const ls = await nerdctl.ok(["network", "ls"]);
    expect(ls).toContain(network);
    const a = await run(`a-${tag}`, [], sleeper);
    const b = await run(`b-${tag}`, [], web("hello-b"));
    expect(a.ep.addresses.ipv4).toBeTruthy();
    expect(a.ep.addresses.ipv6).toBeTruthy();
    for (const addr of [b.ep.addresses.ipv4!, b.ep.addresses.ipv6!]) {
      const out = await nerdctl.ok(["exec", a.name, "ping", "-c", "1", "-W", "3", addr]);
      expect(out).toMatch(/1 packets received/);
    }
    const hosts = await nerdctl.ok(["exec", a.name, "cat", "/etc/hosts"]);
    expect(hosts).toContain(b.name);
    const byName = await nerdctl.ok(["exec", a.name, "ping", "-c", "1", "-W", "3", b.name]);
    expect(byName).toMatch(/1 packets received/);
    const page = await nerdctl.ok([
      "exec",
      a.name,
      "sh",
      "-c",
      `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 ${b.ep.addresses.ipv4} 80`,
    ]);
    expect(page).toContain("hello-b");
  });

  it("names the endpoint after the container and carries its labels", async () => {
    const c = await run(`named-${tag}`, ["--label", "app=named", "--label", "tier=e2e"], sleeper);
    const ep = await waitFor("the container's labels on its endpoint", async () => {
      const eps = await nkitd!.cli<EndpointJson[]>(["endpoint", "list"]);
      const e = eps.find((x) => x.id === c.cniId);
      return e?.labels["nkit.io/container-name"] ? e : undefined;
    });
    expect(ep.labels).toMatchObject({
      app: "named",
      tier: "e2e",
      "nkit.io/container-name": c.name,
      "nkit.io/container-namespace": nerdctl.namespace,
    });
    // A service selecting those labels gets the container as its backend.
    const svc = `named-${tag}`.toLowerCase();
    await nkitd!.cli(["service", "add", svc, "--vip", "10.96.77.7:80/tcp", "--selector", "app=named"]);
    const listed = await waitFor("the selector to pick the container", async () => {
      const all = await nkitd!.cli<{ name: string; frontends: { backends: string[] }[] }[]>([
        "service",
        "list",
      ]);
      const f = all.find((x) => x.name === svc)?.frontends[0];
      return f && f.backends.length > 0 ? f : undefined;
    });
    expect(listed.backends).toEqual([`${ep.addresses.ipv4}:80`]);
    await nkitd!.cli(["service", "delete", svc]);
  });

  it("honours --ip and --ip6, refuses a taken or out-of-range address clearly", async () => {
    const [cidr4, cidr6] = nkitd!.podCIDRs as [string, string];
    const ip4 = cidr4.replace(/0\/24$/, "77");
    const ip6 = cidr6.replace(/::\/64$/, "::77");
    const c = await run(`ip-${tag}`, ["--ip", ip4, "--ip6", ip6], sleeper);
    expect(c.ep.addresses).toEqual({ ipv4: ip4, ipv6: ip6 });
    const taken = await nerdctl.run([
      "run",
      "-d",
      "--name",
      `taken-${tag}`,
      "--network",
      network,
      "--ip",
      ip4,
      image,
      ...sleeper,
    ]);
    expect(taken.code).not.toBe(0);
    expect(taken.stderr).toMatch(/already assigned/);
    const outside = await nerdctl.run([
      "run",
      "-d",
      "--name",
      `out-${tag}`,
      "--network",
      network,
      "--ip",
      "192.0.2.9",
      image,
      ...sleeper,
    ]);
    expect(outside.code).not.toBe(0);
    expect(outside.stderr).toMatch(/not an assignable address of the pod CIDR/);
    await nerdctl.run(["rm", "-f", `taken-${tag}`, `out-${tag}`]);
  });

  it("publishes -p HOST:CONTAINER to the host's addresses, 127.0.0.1 and other containers", async () => {
    const port = 18000 + Math.floor(Math.random() * 1000);
    const w = await run(`web-${tag}`, ["-p", `${port}:80`], web("hello-p"));
    expect(
      await waitFor("127.0.0.1 answers", () => httpGet("127.0.0.1", port).catch(() => undefined)),
    ).toContain("hello-p");
    expect(await httpGet(nkitd!.hostV4, port)).toContain("hello-p");
    const client = await run(`pc-${tag}`, [], sleeper);
    const viaHost = await nerdctl.ok([
      "exec",
      client.name,
      "sh",
      "-c",
      `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 ${nkitd!.hostV4} ${port}`,
    ]);
    expect(viaHost).toContain("hello-p");
    // From another host: not here. nkitd's socket load-balancer hooks the host's root cgroup, which
    // every process of this machine is in (a netns "far host" too), so its connect() is translated
    // before a packet leaves. test/integration/nkitd-hostports.test.ts scopes the hooks to a cgroup of
    // its own and sends nerdctl's exact payload (HostIP 0.0.0.0) through nkit-cni from another host.
    // The same host port again fails the run with a clear message.
    const again = await nerdctl.run([
      "run",
      "-d",
      "--name",
      `web2-${tag}`,
      "--network",
      network,
      "-p",
      `${port}:80`,
      image,
      ...sleeper,
    ]);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/port is already allocated|already mapped by container/);
    await nerdctl.run(["rm", "-f", `web2-${tag}`]);
    void w;
  });

  it("stop, rm, restart and --rm leave nothing; the same name re-created is wired again", async () => {
    const name = `cycle-${tag}`;
    const first = await run(name, [], sleeper);
    await nerdctl.ok(["stop", "-t", "1", name]);
    // Stopped: the postStop hook's DEL (empty netns) took the endpoint and its addresses.
    const firstIps = { id: first.cniId, ips: [first.ep.addresses.ipv4!, first.ep.addresses.ipv6!] };
    expect(await leftovers(nkitd!, [firstIps])).toEqual([]);
    expect((await nkitd!.cli<EndpointJson[]>(["endpoint", "list"])).map((e) => e.id)).not.toContain(
      first.cniId,
    );
    await nerdctl.ok(["start", name]);
    const restarted = await endpointOf(first.cniId);
    const out = await nerdctl.ok(["exec", name, "ip", "-o", "addr", "show", "eth0"]);
    expect(out).toContain(restarted.addresses.ipv4!);
    await nerdctl.ok(["rm", "-f", name]);
    const gone = { id: first.cniId, ips: [restarted.addresses.ipv4!, restarted.addresses.ipv6!] };
    await waitFor("the endpoint to go", async () =>
      (await leftovers(nkitd!, [gone])).length === 0 ? true : undefined,
    );
    const second = await run(name, [], sleeper);
    expect(second.cniId).not.toBe(first.cniId);
    await nerdctl.ok(["rm", "-f", name]);
    const once = (
      await nerdctl.ok(["run", "--rm", "--network", network, image, "sh", "-c", "ip -o addr show eth0"])
    ).trim();
    expect(once).toMatch(/inet /);
    await nerdctl.removeAll();
    expect(
      await waitFor("nkitd to be empty", async () =>
        (await nkitdEmpty(nkitd!)).length === 0 ? true : undefined,
      ),
    ).toBe(true);
  });

  it("compose with the network declared external: services reach each other by name and through a published port; down leaves nothing", async () => {
    const port = 19000 + Math.floor(Math.random() * 1000);
    const dir = nerdctl.dataRoot;
    const file = join(dir, `compose-${tag}.yaml`);
    writeFileSync(
      file,
      [
        "services:",
        "  web:",
        `    image: ${image}`,
        `    command: ["sh", "-c", "mkdir -p /www && echo hello-compose > /www/index.html && exec httpd -f -p 80 -h /www"]`,
        `    ports: ["${port}:80"]`,
        "    labels: {app: compose-web}",
        "  client:",
        `    image: ${image}`,
        `    command: ["sleep", "3600"]`,
        "networks:",
        "  default:",
        "    external: true",
        `    name: ${network}`,
        "",
      ].join("\n"),
    );
    const project = ["compose", "-f", file, "-p", `p${tag}`.toLowerCase()];
    await nerdctl.ok([...project, "up", "-d"], 120_000);
    const eps = await waitFor("both services wired", async () => {
      const all = await nkitd!.cli<EndpointJson[]>(["endpoint", "list"]);
      const mine = all.filter((e) => e.labels["com.docker.compose.project"] === `p${tag}`.toLowerCase());
      return mine.length === 2 ? mine : undefined;
    });
    for (const e of eps) nkitd!.track(e.id);
    const byName = await nerdctl.ok([
      ...project,
      "exec",
      "client",
      "sh",
      "-c",
      `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 web 80`,
    ]);
    expect(byName).toContain("hello-compose");
    expect(await httpGet("127.0.0.1", port)).toContain("hello-compose");
    await nerdctl.ok([...project, "down"], 120_000);
    const left = eps.map((e) => ({ id: e.id, ips: [e.addresses.ipv4!, e.addresses.ipv6!] }));
    expect(
      await waitFor("compose down to leave nothing", async () =>
        (await leftovers(nkitd!, left)).length === 0 ? true : undefined,
      ),
    ).toBe(true);
    await expect(httpGet("127.0.0.1", port, 1_000)).rejects.toThrow();
  });

  it("containers keep their traffic while nkitd restarts and are still listed; a DEL while nkitd is down is finished when it is back", async () => {
    const a = await run(`ra-${tag}`, ["--label", "app=restart"], sleeper);
    const b = await run(`rb-${tag}`, [], sleeper);
    await nkitd!.kill("SIGKILL");
    const ping = async () => nerdctl.ok(["exec", a.name, "ping", "-c", "1", "-W", "3", b.ep.addresses.ipv6!]);
    expect(await ping()).toMatch(/1 packets received/);
    // nkitd down: removing b queues its DEL in the shim.
    await nerdctl.ok(["rm", "-f", b.name]);
    await nkitd!.start();
    const eps = await nkitd!.cli<EndpointJson[]>(["endpoint", "list"]);
    const ea = eps.find((e) => e.id === a.cniId);
    expect(ea?.labels).toMatchObject({ app: "restart", "nkit.io/container-name": a.name });
    expect(eps.map((e) => e.id)).not.toContain(b.cniId);
    const gone = { id: b.cniId, ips: [b.ep.addresses.ipv4!, b.ep.addresses.ipv6!] };
    expect(
      await waitFor("b's DEL replayed", async () =>
        (await leftovers(nkitd!, [gone])).length === 0 ? true : undefined,
      ),
    ).toBe(true);
    expect(
      await nerdctl.ok([
        "exec",
        a.name,
        "ping",
        "-c",
        "1",
        "-W",
        "3",
        eps.find((e) => e.id !== a.cniId)?.addresses.ipv4 ?? a.ep.addresses.ipv4!,
      ]),
    ).toMatch(/packets received/);
    await nerdctl.ok(["rm", "-f", a.name]);
  });

  it("nerdctl network rm and prune leave the nkit network alone", async () => {
    await nerdctl.run(["network", "prune", "-f"]);
    const rm = await nerdctl.run(["network", "rm", network]);
    expect(rm.code).not.toBe(0);
    expect(await nerdctl.ok(["network", "ls"])).toContain(network);
  });
});
