// Proves the e2e environment on the selected lane (NKIT_E2E_CONTAINERD=1.7|2) with stock CNI plugins:
// bridge + host-local on a private bridge and subnet, two pods, TCP from a container in pod A to an
// httpd in pod B, and nothing left behind by stop/remove or by the harness teardown.
import { randomInt } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RUN_ID, uniqueIfName } from "../helpers/names.js";
import {
  bridgeConflistFile,
  type ContainerdEnv,
  IMAGES,
  laneFromEnv,
  links,
  mountsUnder,
  startContainerd,
  unixSocketListening,
  waitFor,
} from "./env/index.js";

const lane = laneFromEnv();
const bridge = uniqueIfName("br");
const network = `nkt-e2e-${RUN_ID}-${randomInt(1 << 24).toString(16)}`;
// the bridge gets no address and no routes, so this subnet never meets the host's own
const subnet = `10.${randomInt(200, 250)}.${randomInt(0, 256)}.0/24`;
const subnetPrefix = subnet.split(".").slice(0, 3).join(".");

async function vethsOn(br: string): Promise<string[]> {
  return (await links()).filter((l) => l.master === br).map((l) => l.ifname);
}

describe(`e2e smoke, containerd lane ${lane}`, () => {
  let env: ContainerdEnv | undefined;
  let dir = "";
  const seenVeths = new Set<string>();

  beforeAll(async () => {
    env = await startContainerd({
      lane,
      name: "smoke",
      cni: { conflists: [bridgeConflistFile({ name: network, bridge, subnet })] },
    });
    dir = env.paths.dir;
  });

  afterAll(async () => {
    await env?.stop();
    // the harness teardown removed the instance, the bridge and every veth that was on it
    if (process.env.NKIT_E2E_KEEP !== "1") expect(existsSync(dir)).toBe(false);
    expect(existsSync(`/sys/class/net/${bridge}`)).toBe(false);
    for (const v of seenVeths) expect(existsSync(`/sys/class/net/${v}`), v).toBe(false);
  });

  it("runs the selected containerd with NRI on a private socket", async () => {
    const e = env!;
    const v = await e.cri.version();
    expect(v.runtimeName).toBe("containerd");
    expect(v.runtimeVersion).toMatch(lane === "1.7" ? /^1\.7\./ : /^v?2\./);
    expect(unixSocketListening(e.paths.nriSocket)).toBe(true);
    const tags = (await e.cri.listImages()).flatMap((i) => i.repoTags);
    expect(tags).toEqual(expect.arrayContaining([IMAGES.pause, IMAGES.busybox]));
  });

  it("connects a busybox in pod A to a TCP server in pod B over bridge + host-local, then cleans up", async () => {
    const e = env!;
    const a = await e.runPod({
      name: "smoke-a",
      labels: { app: "client" },
      annotations: { "nkit.test/role": "a" },
    });
    const b = await e.runPod({ name: "smoke-b", labels: { app: "server" } });
    for (const p of [a, b]) {
      expect(p.ip.startsWith(`${subnetPrefix}.`), `${p.name} ip ${p.ip} in ${subnet}`).toBe(true);
      expect(p.netnsPath, `${p.name} netns`).toBeTruthy();
      expect(existsSync(p.netnsPath!)).toBe(true);
      expect(p.netnsPath!.startsWith(e.paths.state)).toBe(true);
    }
    expect(a.ip).not.toBe(b.ip);
    const veths = await vethsOn(bridge);
    expect(veths).toHaveLength(2);
    for (const v of veths) seenVeths.add(v);

    const server = await e.createAndStartContainer(b, IMAGES.busybox, [
      "/bin/sh",
      "-c",
      "mkdir -p /tmp/www && echo nkit-e2e-ok > /tmp/www/index.html && exec httpd -f -vv -p 8080 -h /tmp/www",
    ]);
    const client = await e.createAndStartContainer(a, IMAGES.busybox, ["/bin/sleep", "3600"]);

    const eth0 = await e.execSync(client, ["ip", "-o", "-4", "addr", "show", "dev", "eth0"]);
    expect(eth0.exitCode).toBe(0);
    expect(eth0.stdout).toContain(`${a.ip}/24`);

    const body = await waitFor(
      `pod A -> http://${b.ip}:8080`,
      async () => {
        // busybox-static's wget segfaults (static glibc resolver), so speak HTTP through nc
        const get = `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 ${b.ip} 8080`;
        const r = await e.execSync(client, ["sh", "-c", get], 10);
        return r.exitCode === 0 && r.stdout.startsWith("HTTP/1.") ? r.stdout : undefined;
      },
      20_000,
      200,
    );
    expect(body).toMatch(/^HTTP\/1\.[01] 200 /);
    expect(body.trimEnd().endsWith("nkit-e2e-ok")).toBe(true);
    // the server saw pod A's address as the peer; the other direction is refused (nothing listens in A)
    expect(await e.containerLog(server)).toContain(a.ip);
    const refused = await e.execSync(server, ["sh", "-c", `echo | nc -w 2 ${a.ip} 8080 || echo refused`]);
    expect(refused.stdout.trim()).toBe("refused");

    for (const p of [a, b]) {
      await e.stopPod(p.id);
      await e.removePod(p.id);
      expect(existsSync(p.netnsPath!), `${p.name} netns removed`).toBe(false);
    }
    expect(await e.cri.listPodSandbox()).toEqual([]);
    expect(await e.cri.listContainers()).toEqual([]);
    expect(await vethsOn(bridge)).toEqual([]);
    for (const v of veths) expect(existsSync(`/sys/class/net/${v}`), v).toBe(false);
    expect(mountsUnder(e.paths.dir)).toEqual([]);
    const netnsDirs = [`${e.paths.state}/io.containerd.grpc.v1.cri/netns`, `${e.paths.state}/netns`];
    for (const d of netnsDirs) if (existsSync(d)) expect(readdirSync(d)).toEqual([]);
  });
});
