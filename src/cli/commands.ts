// The nkit commands that talk to nkitd (status, endpoint, ipam, bpf map, monitor) and the host
// commands (doctor, install, uninstall). Each returns an exit code; errors propagate to main.ts.
import { NkitClient } from "../api/client.js";
import { canonicalReason } from "../api/reason-names.js";
import type * as T from "../api/types.js";
import type { InvalidArgumentError } from "../errors.js";
import { type Check, type DoctorOptions, doctorFailed, runDoctor } from "./doctor.js";
import {
  defaultCniPlugin,
  defaultNkitdCommand,
  type FileReport,
  type InstallOptions,
  install,
  uninstall,
} from "./install.js";
import { EXIT, num, printJson, table, usageError } from "./output.js";
import { type GlobalOpts, withClient } from "./session.js";

const out = (s: string) => process.stdout.write(s);

const addrs = (a: T.Addresses): string => [a.ipv4, a.ipv6].filter(Boolean).join(",");

/** Only the address families that are set (the API sends "" for a missing one). */
const addrsJson = (a: T.Addresses) => ({
  ...(a.ipv4 ? { ipv4: a.ipv4 } : {}),
  ...(a.ipv6 ? { ipv6: a.ipv6 } : {}),
});

export function endpointJson(e: T.Endpoint): Record<string, unknown> {
  return { ...e, addresses: addrsJson(e.addresses) };
}

const poolJson = (p: T.Pool) => ({ ...p, size: num(p.size) });

const poolTable = (pools: readonly T.Pool[]): string =>
  table(
    ["POOL", "FAMILY", "USED", "SIZE"],
    pools.map((p) => [p.cidr, `v${p.family}`, String(p.used), p.size]),
  );

const filesTable = (files: readonly FileReport[]): string =>
  table(
    ["FILE", "ACTION"],
    files.map((f) => [f.path, f.action]),
  );

export async function statusCmd(cli: GlobalOpts): Promise<number> {
  const s = await withClient(cli, (c) => c.status());
  if (cli.json) {
    printJson({ ...s, pools: s.pools.map(poolJson) });
    return EXIT.OK;
  }
  const lines = [
    `nkitd ${s.version} (pid ${s.pid}), up ${Math.round(s.uptimeSeconds)}s since ${s.startedAt}`,
    `datapath:   ${s.datapathMode}`,
    `endpoints:  ${s.endpointCount}`,
    ...s.endpointProblems.map(
      (p) =>
        `BROKEN:     ${p.id}: its host device vanished and wiring it again failed (${p.problem}); recreate the pod`,
    ),
    `services:   ${s.servicesEnabled ? `${s.serviceCount} (${s.frontendCount} frontends)` : "off (the load-balancer did not start: see nkitd's log)"}`,
    ...(s.nomad
      ? [
          `nomad:      ${s.nomad.address}: ${s.nomad.connected ? `in sync, ${s.nomad.services} services` : `UNREACHABLE (${s.nomad.lastError || "not yet synced"}), the last known services keep working`}`,
        ]
      : []),
    ...(s.nri
      ? [
          `nri:        ${s.nri.connected ? `connected to ${s.nri.runtime || "the runtime"}${s.nri.synchronized ? "" : ", synchronizing"}` : `NOT CONNECTED to ${s.nri.socket} (${s.nri.lastError || "connecting"}): CRI pods are not wired until it is`}`,
        ]
      : []),
    ...(s.cluster
      ? [
          `cluster:    node ${s.cluster.node}, pod CIDRs ${s.cluster.podCidrs.join(", ")}, ${s.cluster.nodes} other nodes; ${s.cluster.connected && !s.cluster.lastError ? "in sync" : s.cluster.connected ? s.cluster.lastError : `Nomad UNREACHABLE (${s.cluster.lastError || "not yet read"}), keeping the claim and the last known nodes`}`,
        ]
      : []),
    `uplinks:    ${s.uplinks.join(", ") || "(none)"}`,
    `metrics:    ${s.metricsListen || "off"}`,
    `bpffs:      ${s.bpffsDir}`,
    `state:      ${s.stateDir}`,
    "",
  ];
  out(lines.join("\n"));
  out(poolTable(s.pools));
  out("\n");
  out(
    table(
      ["PROBE", "RESULT", "DETAIL"],
      s.probes.map((p) => [p.name, p.supported ? "pass" : "fail", p.supported ? "" : `needs ${p.need}`]),
    ),
  );
  return EXIT.OK;
}

/**
 * What the endpoint is called where it came from: a CRI pod's namespace/name, a nerdctl container's
 * namespace/name, a Nomad allocation's namespace/job.group[alloc] (labels the pod lifecycle and the
 * CNI door set), else "-".
 */
function endpointName(labels: Record<string, string>): string {
  const pod = labels["nkit.io/pod-name"];
  if (pod) return `${labels["nkit.io/pod-namespace"] ?? ""}/${pod}`;
  const container = labels["nkit.io/container-name"];
  if (container) return `${labels["nkit.io/container-namespace"] ?? ""}/${container}`;
  const job = labels["nkit.io/nomad-job"];
  if (job) {
    const alloc = (labels["nkit.io/nomad-alloc"] ?? "").slice(0, 8);
    return `${labels["nkit.io/nomad-namespace"] ?? ""}/${job}.${labels["nkit.io/nomad-group"] ?? ""}[${alloc}]`;
  }
  return "-";
}

export async function endpointListCmd(cli: GlobalOpts): Promise<number> {
  const r = await withClient(cli, (c) => c.listEndpoints());
  if (cli.json) {
    printJson(r.endpoints.map(endpointJson));
    return EXIT.OK;
  }
  out(
    table(
      ["NAME", "ID", "EP", "MODE", "HOST DEV", "IFINDEX", "ADDRESSES", "NETNS"],
      r.endpoints.map((e) => [
        endpointName(e.labels),
        e.id,
        String(e.epNum),
        e.mode,
        e.hostIfName,
        String(e.hostIfindex),
        addrs(e.addresses),
        e.netnsPath,
      ]),
    ),
  );
  return EXIT.OK;
}

export async function endpointGetCmd(cli: GlobalOpts, id: string): Promise<number> {
  const r = await withClient(cli, (c) => c.getEndpoint(id));
  const counters = r.counters.map((c) => ({ ...c, packets: num(c.packets), bytes: num(c.bytes) }));
  if (cli.json) {
    printJson({ endpoint: endpointJson(r.endpoint), counters });
    return EXIT.OK;
  }
  const e = r.endpoint;
  out(
    [
      `id:         ${e.id}`,
      `ep number:  ${e.epNum}`,
      `mode:       ${e.mode}`,
      `host dev:   ${e.hostIfName} (ifindex ${e.hostIfindex})`,
      `pod dev:    ${e.podIfName} in ${e.netnsPath}`,
      `addresses:  ${addrs(e.addresses)}`,
      `labels:     ${
        Object.entries(e.labels)
          .map(([k, v]) => `${k}=${v}`)
          .join(", ") || "(none)"
      }`,
      "",
    ].join("\n"),
  );
  out(
    table(
      ["REASON", "KIND", "PACKETS", "BYTES"],
      r.counters.map((c) => [c.reason, c.drop ? "drop" : "forward", c.packets, c.bytes]),
    ),
  );
  return EXIT.OK;
}

export async function ipamCmd(cli: GlobalOpts): Promise<number> {
  const r = await withClient(cli, (c) => c.ipam());
  if (cli.json) {
    printJson({
      pools: r.pools.map(poolJson),
      allocations: r.allocations.map((a) => ({ id: a.id, ...addrsJson(a) })),
    });
    return EXIT.OK;
  }
  out(poolTable(r.pools));
  out("\n");
  out(
    table(
      ["ENDPOINT", "IPV4", "IPV6"],
      r.allocations.map((a) => [a.id, a.ipv4, a.ipv6]),
    ),
  );
  return EXIT.OK;
}

export async function mapListCmd(cli: GlobalOpts): Promise<number> {
  const r = await withClient(cli, (c) => c.listMaps());
  if (cli.json) {
    printJson(r.maps);
    return EXIT.OK;
  }
  out(
    table(
      ["NAME", "TYPE", "KEY", "VALUE", "MAX", "ENTRIES", "PIN"],
      r.maps.map((m) => [
        m.name,
        m.type,
        String(m.keySize),
        String(m.valueSize),
        String(m.maxEntries),
        m.dumpable ? String(m.entries) : "-",
        m.pinPath,
      ]),
    ),
  );
  return EXIT.OK;
}

const flat = (v: unknown): string =>
  v !== null && typeof v === "object"
    ? Object.entries(v)
        .map(([k, x]) => `${k}=${Array.isArray(x) ? x.join("|") : String(x)}`)
        .join(" ")
    : String(v);

export async function mapDumpCmd(cli: GlobalOpts, name: string): Promise<number> {
  const r = await withClient(cli, (c) => c.dumpMap(name));
  const entries = r.entries.map((e) => ({
    key: JSON.parse(e.keyJson) as unknown,
    value: JSON.parse(e.valueJson) as unknown,
  }));
  if (cli.json) {
    printJson({ map: r.map, entries });
    return EXIT.OK;
  }
  out(
    table(
      ["KEY", "VALUE"],
      entries.map((e) => [flat(e.key), flat(e.value)]),
    ),
  );
  out(`${entries.length} entries in ${r.map.name} (${r.map.type})\n`);
  return EXIT.OK;
}

const PROTO: Record<number, string> = { 1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6" };

export async function monitorCmd(
  cli: GlobalOpts,
  o: { endpoint?: string; reason?: string[]; count?: string },
): Promise<number> {
  let reasons: string[];
  try {
    reasons = (o.reason ?? [])
      .flatMap((r) => r.split(","))
      .filter(Boolean)
      .map(canonicalReason);
  } catch (e) {
    throw usageError((e as InvalidArgumentError).message);
  }
  const limit = o.count === undefined ? undefined : Number(o.count);
  if (limit !== undefined && (!Number.isInteger(limit) || limit <= 0)) {
    throw usageError(`--count must be a positive integer, got "${o.count}"`);
  }
  const c = new NkitClient(cli.socket);
  let seen = 0;
  try {
    if (!cli.json)
      out(
        `${table(["TIME", "EVENT", "REASON", "ENDPOINT", "IFINDEX", "PROTO", "SOURCE", "DESTINATION", "LEN"], [])}`,
      );
    const stream = c.monitor({ endpointId: o.endpoint ?? "", reasons }, (e) => {
      if (cli.json) out(`${JSON.stringify({ ...e, monotonicNs: num(e.monotonicNs) })}\n`);
      else {
        out(
          `${[
            e.time,
            e.type,
            e.reason,
            e.endpointId || (e.epNum ? `#${e.epNum}` : "-"),
            String(e.ifindex),
            PROTO[e.protocol] ?? String(e.protocol),
            e.src || "-",
            e.dst || "-",
            String(e.length),
          ].join("  ")}${e.lostBefore ? `  (${e.lostBefore} lost before)` : ""}\n`,
        );
      }
      seen++;
      if (limit !== undefined && seen >= limit) stream.cancel();
    });
    const onSignal = () => stream.cancel();
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    await stream.ready;
    process.stderr.write(
      `nkit: monitoring datapath events${o.endpoint ? ` of ${o.endpoint}` : ""}${reasons.length ? ` (${reasons.join(", ")})` : ""}; Ctrl-C stops\n`,
    );
    await stream.done;
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  } finally {
    c.close();
  }
  return EXIT.OK;
}

export async function doctorCmd(cli: GlobalOpts, o: Omit<DoctorOptions, "socket">): Promise<number> {
  const checks: Check[] = await runDoctor({ socket: cli.socket, ...o });
  const failed = doctorFailed(checks);
  if (cli.json) {
    printJson({ ok: !failed, checks });
  } else {
    for (const c of checks) {
      out(`${c.status.padEnd(4)}  ${c.name}: ${c.detail}${c.required ? "" : ""}\n`);
      if (c.status !== "pass" && c.fix) out(`      fix: ${c.fix}\n`);
    }
    const warns = checks.filter((c) => c.status === "warn").length;
    const fails = checks.filter((c) => c.status === "fail").length;
    out(
      `\n${failed ? "FAILED" : "OK"}: ${checks.length - warns - fails} passed, ${warns} warnings, ${fails} failed\n`,
    );
  }
  return failed ? EXIT.DOCTOR_FAILED : EXIT.OK;
}

/** install/uninstall options as commander parses them: the package defaults not filled in yet. */
export type RawInstall = Omit<InstallOptions, "patchContainerd" | "cniPlugin" | "nkitd"> & {
  patchContainerd?: boolean;
  cniPlugin?: string;
  nkitd?: string;
};

function resolveInstall(o: RawInstall): InstallOptions {
  return {
    ...o,
    patchContainerd: Boolean(o.patchContainerd),
    cniPlugin: o.cniPlugin ?? defaultCniPlugin(),
    nkitd: o.nkitd ?? defaultNkitdCommand(),
  };
}

export function installCmd(cli: GlobalOpts, raw: RawInstall): number {
  const r = install(resolveInstall(raw));
  if (cli.json) {
    printJson(r);
    return EXIT.OK;
  }
  out(filesTable(r.files));
  const cd = r.containerd;
  out(
    `\ncontainerd ${cd.version || "(not found)"}: NRI ${cd.nriEnabled === null ? "state unknown" : cd.nriEnabled ? "enabled" : "DISABLED"} (${cd.detail})\n`,
  );
  if (cd.patched) out(`patched ${cd.config}${cd.backup ? `; backup at ${cd.backup}` : ""}\n`);
  out(`manifest: ${r.manifest}\nnext:\n${r.next.map((n) => `  ${n}`).join("\n")}\n`);
  return EXIT.OK;
}

export function uninstallCmd(cli: GlobalOpts, raw: RawInstall): number {
  const r = uninstall(resolveInstall(raw));
  if (cli.json) {
    printJson(r);
    return EXIT.OK;
  }
  out(filesTable(r.files));
  for (const d of r.directories) out(`removed empty directory ${d}\n`);
  out(`${r.note}\n`);
  return EXIT.OK;
}
