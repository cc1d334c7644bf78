// The quickstart demo: a private containerd (Debian's 1.7.24, NRI on) whose CRI pods go through
// nkit-cni (ipam mode) and nkitd's NRI plugin, two pods talking over IPv4 and IPv6, and what nkit
// saw. It reuses the e2e harness (test/e2e/env), so the demo is exactly what the tests run, and it
// removes everything it created (pods, containerd, nkitd, devices, pins) when it ends.
import { randomInt } from "node:crypto";
import { table } from "../src/cli/output.js";
import { IMAGES, type Pod, startContainerd, waitFor } from "../test/e2e/env/index.js";
import { type CounterJson, type EndpointJson, nkitCni, startNkitd } from "../test/e2e/env/nkit.js";

const PORT = 8080;
const out = (s = ""): void => {
  process.stdout.write(`${s}\n`);
};
const v4Of = (p: Pod): string => [p.ip, ...p.additionalIps].find((ip) => ip.includes(".")) ?? "-";
const v6Of = (p: Pod): string => [p.ip, ...p.additionalIps].find((ip) => ip.includes(":")) ?? "-";

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("the demo runs containerd and wires pods: run it as root");
  out(
    "starting a private containerd 1.7.24 with NRI, CNI = [loopback, nkit-cni (ipam)] from `nkit install` ...",
  );
  const env = await startContainerd({
    lane: "1.7",
    name: "nkit-demo",
    // conflist, nkit-cni, unit and tmpfiles exactly as `nkit install` writes them
    cni: nkitCni(`nkit-demo-${randomInt(1 << 24).toString(16)}`),
    nri: { enabled: true, requestTimeout: "2s" },
  });
  try {
    const nkitd = await startNkitd(env, { logLevel: "info" });
    await nkitd.waitNri();
    out(`nkitd is up: pod CIDRs ${nkitd.podCIDRs.join(", ")}; registered with containerd over NRI`);
    out();

    const t0 = performance.now();
    const web = await env.runPod({ name: "web", labels: { app: "web" } });
    nkitd.track(web.id);
    const t1 = performance.now();
    const client = await env.runPod({ name: "client", labels: { app: "client" } });
    nkitd.track(client.id);
    const t2 = performance.now();
    out(`CRI RunPodSandbox: web ${(t1 - t0).toFixed(0)} ms, client ${(t2 - t1).toFixed(0)} ms`);
    out(
      table(
        ["pod", "sandbox id", "IPv4 (from CRI)", "IPv6 (from CRI)"],
        [web, client].map((p) => [p.name, p.id.slice(0, 12), v4Of(p), v6Of(p)]),
      ).trimEnd(),
    );
    out();

    const server = await env.createAndStartContainer(web, IMAGES.busybox, [
      "/bin/sh",
      "-c",
      `mkdir -p /tmp/www && echo "hello from pod web" > /tmp/www/index.html && exec httpd -f -p ${PORT} -h /tmp/www`,
    ]);
    const shell = await env.createAndStartContainer(client, IMAGES.busybox, ["/bin/sleep", "3600"]);
    const addr = await env.execSync(shell, ["ip", "-o", "addr", "show", "dev", "eth0"]);
    out("client's eth0, as its busybox container sees it:");
    for (const l of addr.stdout.trim().split("\n")) out(`  ${l.replace(/\s+/g, " ")}`);
    out();
    for (const target of [v4Of(web), v6Of(web)]) {
      const ping = await env.execSync(shell, ["ping", "-c", "3", "-W", "2", target], 15);
      const summary = ping.stdout.split("\n").filter((l) => /transmitted|round-trip/.test(l));
      out(`client$ ping ${target}: ${summary.join("; ")}`);
      const body = await waitFor(
        `HTTP to ${target}`,
        async () => {
          const r = await env.execSync(
            shell,
            ["sh", "-c", `printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 ${target} ${PORT}`],
            10,
          );
          return r.exitCode === 0 && r.stdout.includes("hello") ? r.stdout : undefined;
        },
        20_000,
        200,
      );
      out(
        `client$ HTTP GET http://${target.includes(":") ? `[${target}]` : target}:${PORT}/ -> ${body.trim().split("\n").at(-1)}`,
      );
    }
    void server;
    out();

    out("nkit endpoint list:");
    const eps = await nkitd.cli<EndpointJson[]>(["endpoint", "list"]);
    out(
      table(
        ["pod", "host device", "mode", "IPv4", "IPv6"],
        eps.map((e) => [
          e.labels["nkit.io/pod-name"] ?? e.id,
          e.hostIfName,
          e.mode,
          e.addresses.ipv4 ?? "-",
          e.addresses.ipv6 ?? "-",
        ]),
      ).trimEnd(),
    );
    out();
    out("BPF counters of pod web (REDIRECT_PEER: delivered by bpf_redirect_peer, no host stack):");
    const got = await nkitd.cli<{ counters: CounterJson[] }>(["endpoint", "get", web.id]);
    out(
      table(
        ["reason", "packets", "bytes"],
        got.counters.map((c) => [c.reason, String(c.packets), String(c.bytes)]),
      ).trimEnd(),
    );
    out();

    for (const p of [client, web]) {
      await env.stopPod(p.id);
      await env.removePod(p.id);
    }
    const left = await nkitd.cli<EndpointJson[]>(["endpoint", "list"]);
    out(`pods stopped and removed: nkit now has ${left.length} endpoints`);
  } finally {
    await env.stop();
  }
  out("containerd and nkitd stopped; everything the demo created is gone");
}

main().catch((e: unknown) => {
  process.stderr.write(`demo failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
