// nkit on a real containerd (lane NKIT_E2E_CONTAINERD=1.7|2): CRI pods through the conflist chain
// [nkit-cni (mode ipam), loopback] and nkitd's NRI plugin, with a real nkitd from dist/.
//   - two pods get eth0 with exactly the v4+v6 addresses CRI reports; TCP pod A -> pod B and pod A ->
//     a host server, both families; the endpoints' counters show REDIRECT_PEER;
//   - stop + remove leave nothing (device, routes, neighbours, nk_endpoints, IPAM, pins, attachments);
//   - a RUN that cannot be wired fails the pod with nkit's message and the rollback leaves nothing.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hostIfName } from "../../src/datapath/naming.js";
import {
  type ContainerdEnv,
  IMAGES,
  laneFromEnv,
  mountsUnder,
  type Pod,
  startContainerd,
  waitFor,
} from "./env/index.js";
import {
  type CounterJson,
  type EndpointJson,
  leftovers,
  NKIT_CLI,
  type Nkitd,
  nkitContainerdOptions,
  nkitdEmpty,
  podRef,
  podV4,
  podV6,
  startNkitd,
  uniqueNkitNetwork,
} from "./env/nkit.js";

const lane = laneFromEnv();
const network = uniqueNkitNetwork();
const PORT = 8080;

/** A TCP server on the host that answers "host-ok <peer address>" and records its peers. */
async function hostServer(address: string): Promise<{ server: Server; peers: string[] }> {
  const peers: string[] = [];
  const server = createServer((s: Socket) => {
    s.setTimeout(5_000, () => s.destroy());
    peers.push(s.remoteAddress ?? "");
    s.end(`host-ok ${s.remoteAddress}\n`);
    s.on("error", () => undefined);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(PORT, address, () => resolve());
  });
  return { server, peers };
}

describe(`nkit CRI pods (nkit-cni ipam + NRI), containerd lane ${lane}`, () => {
  let env: ContainerdEnv | undefined;
  let nkitd: Nkitd | undefined;
  const servers: Server[] = [];

  beforeAll(async () => {
    env = await startContainerd(nkitContainerdOptions(lane, "nkit-pods", network));
    nkitd = await startNkitd(env);
    await nkitd.waitNri();
  });

  afterAll(async () => {
    for (const s of servers) s.close();
    const dir = nkitd?.dir;
    await env?.stop();
    if (dir && process.env.NKIT_E2E_KEEP !== "1") expect(existsSync(dir)).toBe(false);
    if (nkitd) expect(existsSync(`/sys/class/net/${nkitd.uplink}`)).toBe(false);
  });

  it("runs on what `nkit install` wrote; `nkit doctor` passes it against this containerd and its plugins", async () => {
    const e = env!;
    const n = nkitd!;
    const conf = JSON.parse(readFileSync(join(e.paths.cniConfDir, "10-nkit.conflist"), "utf8")) as {
      cniVersion: string;
      name: string;
      plugins: { type: string; socket?: string }[];
    };
    expect(conf).toMatchObject({ cniVersion: "1.0.0", name: network });
    expect(conf.plugins.map((p) => p.type)).toEqual(["loopback", "nkit-cni"]);
    expect(conf.plugins[1]?.socket).toBe(n.cniSocket);
    expect(readFileSync(n.unitFile, "utf8")).toMatch(
      new RegExp(`^ExecStart=.* --config ${n.configFile}$`, "m"),
    );
    const doctor = async (confDir: string) => {
      const r = spawnSync(
        process.execPath,
        [NKIT_CLI, "--socket", n.apiSocket, "--json", "doctor", "--cni-conf-dir", confDir]
          .concat(["--cni-bin-dir", e.paths.cniBinDir, "--containerd", e.binaries.containerd])
          .concat(["--containerd-config", e.paths.config]),
        { encoding: "utf8" },
      );
      const d = JSON.parse(r.stdout) as { checks: { name: string; status: string; detail: string }[] };
      return { code: r.status, check: d.checks.find((c) => c.name === "CNI compatibility") };
    };
    const ok = await doctor(e.paths.cniConfDir);
    expect(ok.check?.status, ok.check?.detail).toBe("pass");
    expect(ok.check?.detail).toMatch(
      lane === "2" ? /containerd 2\.\d+\.\d+ \(up to 1\.1\.0\)/ : /containerd 1\.7\.24 \(up to 1\.0\.0\)/,
    );
    expect(ok.check?.detail).toMatch(/loopback ok, nkit-cni ok/);
    expect(ok.code).toBe(0);
    // the conflist as 1.1.0 (what install used to write), in a scratch dir containerd does not watch
    const scratch = mkdtempSync(join(e.paths.dir, "cni-1.1-"));
    writeFileSync(join(scratch, "10-nkit.conflist"), JSON.stringify({ ...conf, cniVersion: "1.1.0" }));
    const bad = await doctor(scratch);
    expect(bad.check?.status).toBe("fail");
    expect(bad.check?.detail).toMatch(/loopback supports .*1\.0\.0, not 1\.1\.0/);
    if (lane === "1.7")
      expect(bad.check?.detail).toMatch(/containerd 1\.7\.24 reads CNI results up to 1\.0\.0/);
    else expect(bad.check?.detail).not.toMatch(/containerd/);
    expect(bad.code).toBe(4);
  });

  it("wires two pods with the CRI-reported addresses; pod->pod and pod->host TCP over v4 and v6", async () => {
    const e = env!;
    const n = nkitd!;
    const h4 = await hostServer(n.hostV4);
    const h6 = await hostServer(n.hostV6);
    servers.push(h4.server, h6.server);

    const a = await e.runPod({ name: "nkit-a", labels: { app: "client" } });
    n.track(a.id);
    const b = await e.runPod({ name: "nkit-b", labels: { app: "server" } });
    n.track(b.id);
    try {
      for (const p of [a, b]) {
        expect(podV4(p), `${p.name} v4`).toMatch(/^10\./);
        expect(podV6(p), `${p.name} v6`).toMatch(/^fd/);
        expect(existsSync(`/sys/class/net/${hostIfName(p.id)}`), `${p.name} host device`).toBe(true);
      }
      expect(podV4(a)).not.toBe(podV4(b));
      const eps = await n.cli<EndpointJson[]>(["endpoint", "list"]);
      for (const p of [a, b]) {
        const ep = eps.find((x) => x.id === p.id);
        expect(ep, `endpoint ${p.id}`).toBeDefined();
        expect(ep?.addresses).toEqual({ ipv4: podV4(p), ipv6: podV6(p) });
        expect(ep?.labels["nkit.io/pod-name"]).toBe(p.name);
      }

      const server = await e.createAndStartContainer(b, IMAGES.busybox, [
        "/bin/sh",
        "-c",
        // busybox httpd listens on [::] (v4 and v6); busybox nc -lk exits here instead of serving
        `mkdir -p /tmp/www && echo nkit-b-ok > /tmp/www/index.html && exec httpd -f -vv -p ${PORT} -h /tmp/www`,
      ]);
      const client = await e.createAndStartContainer(a, IMAGES.busybox, ["/bin/sleep", "3600"]);
      expect(server).toBeTruthy();

      for (const [p, c] of [[a, client] as const]) {
        const addr = await e.execSync(c, ["ip", "-o", "addr", "show", "dev", "eth0"]);
        expect(addr.exitCode).toBe(0);
        expect(addr.stdout).toContain(`inet ${podV4(p)}/`);
        expect(addr.stdout).toContain(`inet6 ${podV6(p)}/`);
      }

      const tcp = async (target: string, expectText: string): Promise<string> =>
        await waitFor(
          `pod A -> ${target}:${PORT}`,
          async () => {
            // HTTP through nc: busybox-static's wget segfaults (see test/e2e/README.md)
            const get = `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 ${target} ${PORT}`;
            const r = await e.execSync(client, ["sh", "-c", get], 10);
            return r.exitCode === 0 && r.stdout.includes(expectText) ? r.stdout : undefined;
          },
          20_000,
          200,
        );
      await tcp(podV4(b), "nkit-b-ok");
      await tcp(podV6(b), "nkit-b-ok");
      // the server saw pod A's own addresses (no NAT on the way)
      const served = await e.containerLog(server);
      expect(served).toContain(podV4(a));
      expect(served).toContain(podV6(a));
      expect(await tcp(n.hostV4, "host-ok")).toContain(podV4(a));
      expect(await tcp(n.hostV6, "host-ok")).toContain(podV6(a));
      expect(h4.peers).toContain(podV4(a));
      expect(h6.peers).toContain(podV6(a));

      const redirected = async (p: Pod): Promise<number> => {
        const r = await n.cli<{ counters: CounterJson[] }>(["endpoint", "get", p.id]);
        return r.counters.filter((c) => c.reason === "REDIRECT_PEER").reduce((s, c) => s + c.packets, 0);
      };
      const [ra, rb] = [await redirected(a), await redirected(b)];
      expect(ra + rb, `REDIRECT_PEER packets a=${ra} b=${rb}`).toBeGreaterThan(0);
      expect(ra, "pod A's packets to pod B are redirected to the peer").toBeGreaterThan(0);
    } finally {
      for (const p of [a, b]) {
        await e.stopPod(p.id);
        await e.removePod(p.id);
      }
    }
    // stop + remove leave nothing in nkitd or on the host
    expect(await leftovers(n, [podRef(a), podRef(b)])).toEqual([]);
    expect(await nkitdEmpty(n)).toEqual([]);
    expect(await e.cri.listPodSandbox()).toEqual([]);
    expect(mountsUnder(e.paths.state)).toEqual([]);
  });

  it("stop unwires (device gone, reservation released by CNI DEL), remove leaves nothing", async () => {
    const e = env!;
    const n = nkitd!;
    const p = await e.runPod({ name: "nkit-c" });
    n.track(p.id);
    const dev = hostIfName(p.id);
    expect(existsSync(`/sys/class/net/${dev}`)).toBe(true);
    const ipam = await n.cli<{ allocations: { id: string }[] }>(["ipam"]);
    expect(ipam.allocations.map((x) => x.id)).toContain(p.id);

    await e.stopPod(p.id);
    expect(existsSync(`/sys/class/net/${dev}`), "host device after StopPodSandbox").toBe(false);
    expect((await n.cli<EndpointJson[]>(["endpoint", "list"])).map((x) => x.id)).not.toContain(p.id);

    await e.removePod(p.id);
    expect(await leftovers(n, [podRef(p)])).toEqual([]);
    expect(await nkitdEmpty(n)).toEqual([]);
  });

  it("a RUN that cannot be wired fails the pod with nkit's message, and the rollback leaves nothing", async () => {
    // Deterministic wiring failure: the pod's sysctls disable IPv6 in its netns (runc applies them when
    // it creates the sandbox, i.e. before NRI RUN on both lanes), so nkit cannot put the pod's IPv6
    // address on eth0. CNI ADD (ipam mode) does not touch the netns and succeeds; RUN fails.
    const e = env!;
    const n = nkitd!;
    const from = n.lines.length;
    const err = await e
      .runPod({
        name: "nkit-nov6",
        linux: {
          sysctls: {
            "net.ipv6.conf.all.disable_ipv6": "1",
            "net.ipv6.conf.default.disable_ipv6": "1",
          },
        },
      })
      .then(
        () => undefined,
        (x: unknown) => x as Error,
      );
    expect(err, "RunPodSandbox must fail").toBeInstanceOf(Error);
    const msg = err?.message ?? "";
    expect(msg).toMatch(/NRI RunPodSandbox failed|failed to (run|start) sandbox|nri/i);
    expect(msg).toMatch(/nkit: runPodSandbox for pod default\/nkit-nov6 \([0-9a-f]{64}\) failed/);
    const id = /\(([0-9a-f]{64})\) failed/.exec(msg)?.[1] ?? "";
    n.track(id);
    const failed = await n.waitLog((l) => l.msg === "NRI runPodSandbox handler failed", 5_000, from);
    expect(failed.id).toBe(id);

    // containerd rolled back: STOP + REMOVE to the plugins, CNI DEL, netns removed
    // (2.x may still list the sandbox for a moment while its deferred cleanup runs)
    await waitFor(
      `sandbox ${id} gone from ListPodSandbox`,
      async () => ((await e.cri.listPodSandbox()).some((x) => x.id === id) ? undefined : true),
      15_000,
      100,
    );
    expect(await leftovers(n, [{ id, ips: [] }])).toEqual([]);
    expect(await nkitdEmpty(n)).toEqual([]);
    expect(mountsUnder(e.paths.state)).toEqual([]);
  });
});
