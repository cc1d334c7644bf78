// `npm run bench:masquerade`: pod → outside through nkit's BPF SNAT vs iptables MASQUERADE +
// conntrack on the same shape of topology (a pod, a router, an outside netns with no route back
// to the pods), side by side and interleaved in one run: TCP_RR, TCP_CRR, TCP_STREAM. Writes
// bench/results/masquerade-*.{json,md}; never asserts (targets print PASS/MISS).
import { randomInt } from "node:crypto";
import { Conntrack } from "../../src/conntrack/conntrack.js";
import { Masquerade } from "../../src/masquerade/masquerade.js";
import { addNetns } from "./baselines.js";
import type { Cleanup } from "./cleanup.js";
import { measure, type Sample, type Side, type TestKind } from "./measure.js";
import { admitPod, startBenchManager } from "./nkit.js";
import { sh } from "./proc.js";
import { sideBySide, targetTable } from "./results.js";
import { baseEnvironment } from "./runner.js";
import { median, ratio, round } from "./stats.js";

const TESTS: readonly TestKind[] = ["rr", "crr", "stream"];
const PORT = 5202;
const log = (m: string) => process.stderr.write(`[bench:masquerade] ${m}\n`);

/**
 * nkit: pod wired by an EndpointManager in this netns, an uplink veth to the outside, BPF SNAT.
 * bigTcp false: the pods of a host whose uplinks cannot send BIG TCP (64 KiB GSO everywhere).
 */
async function nkitPath(
  prefix: string,
  bigTcp: boolean,
  cleanup: Cleanup,
): Promise<{ client: Side; server: Side }> {
  const net = `10.253.${randomInt(0, 256)}`;
  const up = `${prefix}-u`;
  const outside = await addNetns(`${prefix}-out`, cleanup);
  cleanup.defer("uplink", () => sh("ip", ["link", "del", up]).catch(() => undefined));
  await sh("ip", ["link", "add", up, "type", "veth", "peer", "name", `${up}p`]);
  await sh("ip", ["link", "set", `${up}p`, "netns", `${prefix}-out`]);
  await sh("ip", ["addr", "add", `${net}.1/24`, "dev", up]);
  await sh("ip", ["link", "set", up, "up"]);
  await sh("ip", ["-n", `${prefix}-out`, "addr", "add", `${net}.2/24`, "dev", `${up}p`]);
  await sh("ip", ["-n", `${prefix}-out`, "link", "set", `${up}p`, "up"]);
  const cidr = `10.251.${randomInt(0, 256)}.0/24`;
  const m = await startBenchManager({
    prefix,
    label: "masq",
    mode: "veth",
    cidr,
    uplinks: [up],
    bigTcp,
    cleanup,
  });
  const pod = await admitPod(m, `${prefix}-masq-c`, cleanup);
  const ifindex = Number((await sh("cat", [`/sys/class/net/${up}/ifindex`])).trim());
  const ct = Conntrack.open(m.mgr.maps);
  const nat = Masquerade.open(m.mgr.maps, ct);
  nat.apply({ ipv4: true, ipv6: false, portRange: [32768, 65535], exclude: [cidr] }, [
    { ifindex, ipv4: `${net}.1` },
  ]);
  nat.close();
  ct.close();
  return {
    client: { netnsPath: pod.netnsPath, ipv4: pod.ipv4 },
    server: { netnsPath: outside.path, ipv4: `${net}.2` },
  };
}

/** iptables: a router netns (forwarding, MASQUERADE, FORWARD conntrack) between a pod and the outside. */
async function iptablesPath(prefix: string, cleanup: Cleanup): Promise<{ client: Side; server: Side }> {
  const a = `10.254.${randomInt(0, 128)}`;
  const b = `10.254.${randomInt(128, 256)}`;
  const router = `${prefix}-rtr`;
  const pod = await addNetns(`${prefix}-ipod`, cleanup);
  const outside = await addNetns(`${prefix}-iout`, cleanup);
  const r = await addNetns(router, cleanup);
  const inR = (args: string[]) => sh("ip", ["-n", router, ...args]);
  await inR(["link", "add", "p0", "type", "veth", "peer", "name", "eth0", "netns", `${prefix}-ipod`]);
  await inR(["link", "add", "w0", "type", "veth", "peer", "name", "eth0", "netns", `${prefix}-iout`]);
  await inR(["addr", "add", `${a}.1/24`, "dev", "p0"]);
  await inR(["addr", "add", `${b}.1/24`, "dev", "w0"]);
  await inR(["link", "set", "p0", "up"]);
  await inR(["link", "set", "w0", "up"]);
  await sh("ip", ["-n", `${prefix}-ipod`, "addr", "add", `${a}.2/24`, "dev", "eth0"]);
  await sh("ip", ["-n", `${prefix}-ipod`, "link", "set", "eth0", "up"]);
  await sh("ip", ["-n", `${prefix}-ipod`, "route", "add", "default", "via", `${a}.1`]);
  await sh("ip", ["-n", `${prefix}-iout`, "addr", "add", `${b}.2/24`, "dev", "eth0"]);
  await sh("ip", ["-n", `${prefix}-iout`, "link", "set", "eth0", "up"]);
  await sh("sysctl", ["-qw", "net.ipv4.ip_forward=1"], { netnsPath: r.path });
  const ipt = (args: string[]) => sh("iptables", args, { netnsPath: r.path });
  await ipt(["-t", "nat", "-A", "POSTROUTING", "-s", `${a}.0/24`, "-o", "w0", "-j", "MASQUERADE"]);
  await ipt(["-A", "FORWARD", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"]);
  await ipt(["-A", "FORWARD", "-i", "p0", "-o", "w0", "-j", "ACCEPT"]);
  return {
    client: { netnsPath: pod.path, ipv4: `${a}.2` },
    server: { netnsPath: outside.path, ipv4: `${b}.2` },
  };
}

export function main(argv: readonly string[]): Promise<number> {
  return sideBySide("masquerade", argv, log, async ({ cfg, started, prefix, cleanup }) => {
    const paths = {
      nkit: await nkitPath(prefix, true, cleanup),
      "nkit-64k": await nkitPath(`${prefix}s`, false, cleanup),
      iptables: await iptablesPath(prefix, cleanup),
    };
    const names = Object.keys(paths) as (keyof typeof paths)[];
    const samples: Record<string, Sample[]> = {};
    for (let round_ = 0; round_ < cfg.rounds; round_++) {
      const order = round_ % 2 === 0 ? names : [...names].reverse();
      for (const test of TESTS) {
        for (const name of order) {
          log(`round ${round_ + 1}/${cfg.rounds}: ${name} ${test}`);
          const p = paths[name];
          const m = await measure(test, p.client, p.server, cfg.seconds, PORT);
          const key = `${name}/${test}`;
          samples[key] = [...(samples[key] ?? []), m.sample];
        }
      }
    }
    const med = (name: string, test: TestKind, k: keyof Sample) =>
      round(
        median((samples[`${name}/${test}`] ?? []).map((s) => (s[k] as number | undefined) ?? Number.NaN)),
      );
    const label = {
      nkit: "nkit BPF SNAT (BIG TCP end to end)",
      "nkit-64k": "nkit BPF SNAT, 64 KiB GSO (uplinks without BIG TCP)",
      iptables: "iptables MASQUERADE",
    };
    const rows = names.flatMap((name) =>
      TESTS.map((test) => ({
        path: label[name],
        test,
        rate: med(name, test, "rate"),
        p50_us: med(name, test, "p50_us"),
        gbps: med(name, test, "gbps"),
      })),
    );
    const crr = ratio(med("nkit", "crr", "rate"), med("iptables", "crr", "rate"));
    const stream = ratio(med("nkit", "stream", "gbps"), med("iptables", "stream", "gbps"));
    const rr = ratio(med("nkit", "rr", "p50_us"), med("iptables", "rr", "p50_us"));
    const stream64k = ratio(med("nkit-64k", "stream", "gbps"), med("iptables", "stream", "gbps"));
    const targets = [
      { name: "TCP_CRR rate nkit / iptables", value: crr, target: "≥ 1.0", pass: crr >= 1 },
      { name: "TCP_STREAM Gbit/s nkit / iptables", value: stream, target: "≥ 1.0", pass: stream >= 1 },
      {
        name: "TCP_STREAM Gbit/s nkit (64 KiB GSO, uplinks without BIG TCP) / iptables",
        value: stream64k,
        target: "≥ 1.0",
        pass: stream64k >= 1,
      },
      { name: "TCP_RR p50 nkit / iptables", value: rr, target: "≤ 1.0", pass: rr <= 1 },
    ];
    const result = {
      benchmark: "masquerade",
      startedAt: started.toISOString(),
      config: cfg,
      env: baseEnvironment(),
      rows,
      targets,
      notes: [
        "nkit: the pod's packets are routed by nk_from_container (bpf_fib_lookup + bpf_redirect_neigh) and SNATed in BPF; replies are translated at nk_from_uplink and redirected into the pod. BIG TCP on (nkit's default where every uplink can send it: the veth uplink's GSO/GRO sizes are raised to 192 KiB by nkit).",
        "nkit, 64 KiB GSO: the same with bigTcp: false, i.e. what pods get on a host whose uplinks cannot send BIG TCP (tso_max_size < 192 KiB).",
        "iptables: a router netns with ip_forward, nat POSTROUTING MASQUERADE and a conntrack FORWARD rule; the pod and the outside are veth pairs of the router (MTU 1500, no BIG TCP).",
      ],
    };
    const md = [
      `# nkit masquerade benchmark, ${started.toISOString()}`,
      "",
      `Rounds ${cfg.rounds} × ${cfg.seconds} s per run, client on CPU 0, server on CPU 1 (SCHED_FIFO), order alternating per round; medians. Reproduce: \`sudo npm run bench:masquerade\`.`,
      "",
      "| path | test | rate/s | p50 µs | Gbit/s |",
      "|---|---|---:|---:|---:|",
      ...rows.map((r) => `| ${r.path} | ${r.test} | ${r.rate} | ${r.p50_us} | ${r.gbps} |`),
      "",
      ...targetTable(targets),
      "",
      ...result.notes.map((n) => `- ${n}`),
      "",
    ].join("\n");
    return { result, md };
  });
}
