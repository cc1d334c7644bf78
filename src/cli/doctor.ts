// `nkit doctor`: host checks with a verdict and a fix each. Required checks (datapath attach
// points, BPF helpers, bpffs, nkitd reachable) make `doctor` exit 4 when they fail; the others are
// warnings (features nkit degrades without, or integrations not every host uses).
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { NkitClient } from "../api/client.js";
import type { StatusResponse } from "../api/types.js";
import { type ProbeResult, probeAll } from "../bpf/probe.js";
import { BIG_TCP_SIZE } from "../datapath/devices.js";
import { cniConfFiles, conflistCompat, findNkitConflist } from "./cni-compat.js";
import { type ContainerdVersion, containerdVersion, NRI_SECTION, nriState } from "./containerd.js";
import { CONFLIST_CNI_VERSION } from "./install.js";

export type Verdict = "pass" | "warn" | "fail";

export interface Check {
  name: string;
  status: Verdict;
  required: boolean;
  detail: string;
  fix: string;
}

export interface DoctorOptions {
  socket: string;
  cniConfDir: string;
  cniBinDir: string;
  containerdConfig: string;
  /** The containerd binary whose version is checked (default: containerd in PATH). */
  containerd: string;
}

function safeProbes(): Record<string, ProbeResult> | Error {
  try {
    return probeAll() as Record<string, ProbeResult>;
  } catch (e) {
    return e as Error;
  }
}

function mounted(fstype: string, at?: string): boolean {
  const mounts = readFileSync("/proc/self/mounts", "utf8").split("\n");
  return mounts.some((l) => {
    const f = l.split(" ");
    return f[2] === fstype && (at === undefined || f[1] === at);
  });
}

interface IpLink {
  ifname: string;
  tso_max_size?: number;
  gso_max_size?: number;
  gso_ipv4_max_size?: number;
}

function ipJson<T>(args: string[]): T | undefined {
  try {
    return JSON.parse(
      execFileSync("ip", ["-j", ...args], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }),
    ) as T;
  } catch {
    return undefined;
  }
}

function defaultRouteDevs(): string[] {
  const devs = new Set<string>();
  for (const fam of ["-4", "-6"]) {
    for (const r of ipJson<{ dev?: string }[]>([fam, "route", "show", "default"]) ?? [])
      if (r.dev) devs.add(r.dev);
  }
  return [...devs];
}

/**
 * BIG TCP as nkitd decides it: pods get it only when every uplink (configured, else the
 * default-route devices) can transmit 192 KiB packets, so nothing they send is segmented in software.
 */
function bigTcpCheck(uplinks: readonly string[] | undefined): Check {
  const devs = uplinks && uplinks.length > 0 ? [...uplinks] : defaultRouteDevs();
  const parts: string[] = [];
  let ok = true;
  for (const d of devs) {
    const l = ipJson<IpLink[]>(["-d", "link", "show", "dev", d])?.[0];
    if (!l) continue;
    const tso = l.tso_max_size ?? 0;
    const v4 = l.gso_ipv4_max_size !== undefined;
    parts.push(`${d}: tso_max_size ${tso}${v4 ? "" : " (no IPv4 BIG TCP attributes)"}`);
    if (tso < BIG_TCP_SIZE || !v4) ok = false;
  }
  return {
    name: "BIG TCP",
    status: ok ? "pass" : "warn",
    required: false,
    detail: parts.join("; ") || "no uplinks: pods get BIG TCP",
    fix: ok
      ? ""
      : `pods run with 64 KiB GSO (correct; slower on fast links): BIG TCP needs Linux >= 6.3 and every uplink's driver with tso_max_size >= ${BIG_TCP_SIZE}`,
  };
}

interface IpAddrInfo {
  ifname: string;
  addr_info?: { family: string; local: string; scope: string }[];
}

/**
 * What pods' IPv6 to the outside (masquerade.ipv6, or routed pod addresses) needs of the host: an
 * IPv6 default route through an uplink that holds a global IPv6 address. bpf_fib_lookup checks
 * forwarding only on the device a packet arrives on, and nkit turns it on for each pod's host
 * device, so no global sysctl (net.ipv6.conf.all.forwarding) is needed or checked.
 */
function ipv6OutsideCheck(uplinks: readonly string[] | undefined): Check {
  const base = { name: "IPv6 to the outside", required: false };
  const routes = ipJson<{ dev?: string }[]>(["-6", "route", "show", "default"]) ?? [];
  const routed = [...new Set(routes.map((r) => r.dev).filter((d): d is string => d !== undefined))];
  const devs = uplinks && uplinks.length > 0 ? routed.filter((d) => uplinks.includes(d)) : routed;
  if (devs.length === 0) {
    return {
      ...base,
      status: "warn",
      detail: `no IPv6 default route${uplinks?.length ? ` through nkit's uplinks (${uplinks.join(", ")})` : ""}: pods reach only this host and other pods over IPv6`,
      fix: "add an IPv6 default route through the uplink (for masquerade.ipv6 or routed pod IPv6); no forwarding sysctl is needed",
    };
  }
  const global = devs.flatMap((d) =>
    (ipJson<IpAddrInfo[]>(["-6", "addr", "show", "dev", d]) ?? []).flatMap((l) =>
      (l.addr_info ?? []).filter((a) => a.scope === "global").map((a) => `${d} ${a.local}`),
    ),
  );
  return global.length > 0
    ? {
        ...base,
        status: "pass",
        detail: `IPv6 default route via ${devs.join(", ")}; masqueraded IPv6 leaves as ${global[0]?.split(" ")[1]} (nkit enables IPv6 forwarding on each pod's host device; no global sysctl)`,
        fix: "",
      }
    : {
        ...base,
        status: "warn",
        detail: `IPv6 default route via ${devs.join(", ")} but no global IPv6 address there: masquerade.ipv6 has no address to translate to`,
        fix: `give ${devs[0]} a global IPv6 address (SLAAC or static)`,
      };
}

function cniConfigCheck(dir: string): Check {
  const base = { name: "CNI config", required: false };
  if (!existsSync(dir)) {
    return {
      ...base,
      status: "warn",
      detail: `${dir} does not exist`,
      fix: `run \`nkit install --cni-conf-dir ${dir}\``,
    };
  }
  const files = cniConfFiles(dir);
  const conf = findNkitConflist(dir);
  if (!conf) {
    return {
      ...base,
      status: "warn",
      detail: `no conflist with type nkit-cni in ${dir}${files.length ? ` (found ${files.join(", ")})` : ""}`,
      fix: `run \`nkit install --cni-conf-dir ${dir}\``,
    };
  }
  const first = join(dir, files[0] ?? "") === conf.path;
  return {
    ...base,
    status: first ? "pass" : "warn",
    detail: `${conf.path} uses nkit-cni${first ? "" : ` but ${files[0]} sorts first and wins for containerd`}`,
    fix: first ? "" : `rename it so it sorts first (e.g. 10-nkit.conflist) or remove ${files[0]}`,
  };
}

/** The installed nkit conflist against the installed containerd and the plugins it chains. */
function cniCompatCheck(o: DoctorOptions, containerd: ContainerdVersion | undefined): Check {
  const base = { name: "CNI compatibility" };
  const conf = findNkitConflist(o.cniConfDir);
  if (!conf) {
    return {
      ...base,
      status: "warn",
      required: false,
      detail: `no nkit conflist in ${o.cniConfDir} to check`,
      fix: `run \`nkit install --cni-conf-dir ${o.cniConfDir}\``,
    };
  }
  const v = conflistCompat(conf, o.cniBinDir, containerd);
  const who = containerd ? "" : " (containerd not found: its side is unchecked)";
  return {
    ...base,
    status: v.ok ? "pass" : "fail",
    // an incompatible conflist fails every pod: as fatal as a missing datapath
    required: true,
    detail: v.ok
      ? `${conf.path} declares cniVersion ${conf.cniVersion}: ${v.parts.join(", ")}${who}`
      : `${conf.path} declares cniVersion ${conf.cniVersion}, every pod will fail: ${v.problems.join("; ")}`,
    fix: v.ok
      ? ""
      : `rewrite it with \`nkit install\` (cniVersion ${CONFLIST_CNI_VERSION}, read by containerd 1.7 and 2.x and Debian 12's plugins), and put the plugins it chains in ${o.cniBinDir}`,
  };
}

/** Whether nkitd follows its Nomad; undefined when it is told of none. */
function nomadCheck(s: StatusResponse): Check | undefined {
  const n = s.nomad;
  if (!n) return undefined;
  return n.connected
    ? {
        name: "Nomad service sync",
        status: "pass",
        required: false,
        detail: `following ${n.address}: ${n.services} services from ${n.registrations} registrations`,
        fix: "",
      }
    : {
        name: "Nomad service sync",
        status: "warn",
        required: false,
        detail: `Nomad at ${n.address} unreachable (${n.lastError || "not yet synced"}); the last known services keep working${n.syncedAt ? ` (synced ${n.syncedAt})` : ""}`,
        fix: "check nomad.address and the token in nkitd's config, and that Nomad's API answers from this host",
      };
}

/** Whether nkitd's NRI plugin is registered with the runtime; undefined when NRI is off. */
function nriCheck(s: StatusResponse): Check | undefined {
  const n = s.nri;
  if (!n) return undefined;
  return n.connected
    ? {
        name: "NRI plugin connected",
        status: "pass",
        required: false,
        detail: `registered with ${n.runtime || "the runtime"} on ${n.socket}${n.synchronized ? "" : " (synchronizing)"}`,
        fix: "",
      }
    : {
        name: "NRI plugin connected",
        status: "fail",
        required: false,
        detail: `not connected to ${n.socket} (${n.lastError || "connecting"}): CRI pods are not wired until it is`,
        fix: "start containerd with NRI enabled (see the NRI check above) and point nri.socket at its socket; nkitd keeps retrying",
      };
}

/** Endpoints nkitd found broken (host device gone) and could not wire again. */
function endpointsCheck(s: StatusResponse): Check {
  const broken = s.endpointProblems;
  return broken.length === 0
    ? {
        name: "endpoints intact",
        status: "pass",
        required: false,
        detail: `${s.endpointCount} endpoints`,
        fix: "",
      }
    : {
        name: "endpoints intact",
        status: "warn",
        required: false,
        detail: broken
          .map((p) => `${p.id}: host device gone, wiring it again failed: ${p.problem}`)
          .join("; "),
        fix: "recreate those pods (their runtime's DEL and ADD), then check nkitd's log",
      };
}

/** This node's cluster membership; undefined without nomad.cluster. */
function clusterCheck(s: StatusResponse): Check | undefined {
  const c = s.cluster;
  if (!c) return undefined;
  const name = "Nomad cluster membership";
  if (c.connected && !c.lastError) {
    return {
      name,
      status: "pass",
      required: false,
      detail: `node ${c.node} holds ${c.podCidrs.join(", ")}; routes to ${c.nodes} other nodes`,
      fix: "",
    };
  }
  return c.connected
    ? { name, status: "fail", required: false, detail: c.lastError, fix: "see nkit node list" }
    : {
        name,
        status: "warn",
        required: false,
        detail: `Nomad unreachable (${c.lastError || "not yet read"}); node ${c.node} keeps ${c.podCidrs.join(", ")} and routes to the last known nodes${c.syncedAt ? ` (read ${c.syncedAt})` : ""}`,
        fix: "check nomad.address and the token (variables read/write on the cluster's variable) in nkitd's config",
      };
}

async function nkitdCheck(socket: string): Promise<{
  check: Check;
  mode?: string;
  uplinks?: string[];
  nomad?: Check;
  cluster?: Check;
  endpoints?: Check;
  nri?: Check;
}> {
  const c = new NkitClient(socket, { timeoutMs: 3000 });
  try {
    const s = await c.status();
    const nomad = nomadCheck(s);
    const cluster = clusterCheck(s);
    const nri = nriCheck(s);
    return {
      ...(nri ? { nri } : {}),
      endpoints: endpointsCheck(s),
      ...(nomad ? { nomad } : {}),
      ...(cluster ? { cluster } : {}),
      check: {
        name: "nkitd reachable",
        status: "pass",
        required: true,
        detail: `nkitd ${s.version} on ${socket}: ${s.datapathMode} datapath, ${s.endpointCount} endpoints`,
        fix: "",
      },
      mode: s.datapathMode,
      uplinks: s.uplinks,
    };
  } catch (e) {
    return {
      check: {
        name: "nkitd reachable",
        status: "fail",
        required: true,
        detail: (e as Error).message,
        fix: "start it: systemctl enable --now nkitd (after `nkit install`), or pass --socket PATH",
      },
    };
  } finally {
    c.close();
  }
}

export async function runDoctor(o: DoctorOptions): Promise<Check[]> {
  const checks: Check[] = [];
  const probes = safeProbes();
  const nkitd = await nkitdCheck(o.socket);
  if (probes instanceof Error) {
    checks.push({
      name: "BPF probes",
      status: "fail",
      required: true,
      detail: probes.message,
      fix: "run nkit doctor as root (the probes load tiny BPF programs)",
    });
  } else {
    const netkit = probes.netkit;
    const tcx = probes.tcx;
    const fallback = nkitd.mode === "veth" ? " (nkitd runs veth + tc)" : "";
    checks.push(
      netkit?.supported
        ? { name: "netkit", status: "pass", required: false, detail: "netkit devices available", fix: "" }
        : {
            name: "netkit",
            status: "warn",
            required: false,
            detail: `netkit unavailable: veth + tc fallback in use${fallback}`,
            fix: `for netkit: ${netkit && !netkit.supported ? netkit.need : "Linux >= 6.7 with CONFIG_NETKIT=y"}`,
          },
    );
    const datapathOk = Boolean(netkit?.supported || tcx?.supported);
    checks.push({
      name: "tcx",
      status: tcx?.supported ? "pass" : datapathOk ? "warn" : "fail",
      required: true,
      detail: tcx?.supported
        ? "tcx BPF links available"
        : `tcx unavailable: ${tcx && !tcx.supported ? tcx.reason : ""}`,
      fix: tcx?.supported ? "" : "Linux >= 6.6 (tcx BPF links)",
    });
    const helpers = ["redirect_peer", "redirect_neigh", "fib_lookup"];
    const missing = helpers.filter((h) => !probes[h]?.supported);
    checks.push({
      name: "BPF helpers",
      status: missing.length ? "fail" : "pass",
      required: true,
      detail: missing.length ? `missing: ${missing.join(", ")}` : helpers.join(", "),
      fix: missing.length ? "Linux >= 5.10" : "",
    });
    checks.push({
      name: "BTF",
      status: probes.btf?.supported ? "pass" : "warn",
      required: false,
      detail: probes.btf?.supported ? "/sys/kernel/btf/vmlinux present" : "kernel BTF missing",
      fix: probes.btf?.supported
        ? ""
        : "a kernel built with CONFIG_DEBUG_INFO_BTF=y (needed by later BPF features)",
    });
  }
  const bpffs = mounted("bpf", "/sys/fs/bpf");
  checks.push({
    name: "bpffs",
    status: bpffs ? "pass" : "fail",
    required: true,
    detail: bpffs ? "bpffs mounted on /sys/fs/bpf" : "bpffs is not mounted on /sys/fs/bpf",
    fix: bpffs ? "" : "mount -t bpf bpf /sys/fs/bpf (and add it to /etc/fstab)",
  });
  const cg2 = mounted("cgroup2");
  checks.push({
    name: "cgroup2",
    status: cg2 ? "pass" : "warn",
    required: false,
    detail: cg2 ? "cgroup2 mounted" : "no cgroup2 mount",
    fix: cg2
      ? ""
      : "mount cgroup2 (systemd.unified_cgroup_hierarchy=1): socket-level load balancing needs it",
  });
  checks.push(bigTcpCheck(nkitd.uplinks));
  checks.push(ipv6OutsideCheck(nkitd.uplinks));
  const version = containerdVersion(o.containerd);
  checks.push(
    version
      ? { name: "containerd", status: "pass", required: false, detail: `containerd ${version.text}`, fix: "" }
      : {
          name: "containerd",
          status: "warn",
          required: false,
          detail: `${o.containerd} not found`,
          fix: "install containerd >= 1.7 for CRI pods and nerdctl (Nomad-only hosts can ignore this)",
        },
  );
  const nri = nriState(o.containerdConfig, version);
  checks.push({
    name: "containerd NRI",
    status: nri.enabled ? "pass" : "warn",
    required: false,
    detail: `NRI ${nri.enabled === undefined ? "state unknown" : nri.enabled ? "enabled" : "disabled"}: ${nri.detail}`,
    fix: nri.enabled
      ? ""
      : `set disable = false in ${NRI_SECTION} of ${o.containerdConfig} (or run \`nkit install --patch-containerd\`), then restart containerd`,
  });
  checks.push(cniConfigCheck(o.cniConfDir));
  checks.push(cniCompatCheck(o, version));
  const plugin = join(o.cniBinDir, "nkit-cni");
  checks.push({
    name: "CNI plugin",
    status: existsSync(plugin) ? "pass" : "warn",
    required: false,
    detail: existsSync(plugin) ? `${plugin} present` : `${plugin} missing`,
    fix: existsSync(plugin) ? "" : `run \`nkit install --cni-bin-dir ${o.cniBinDir}\``,
  });
  checks.push(nkitd.check);
  if (nkitd.nri) checks.push(nkitd.nri);
  if (nkitd.nomad) checks.push(nkitd.nomad);
  if (nkitd.endpoints) checks.push(nkitd.endpoints);
  if (nkitd.cluster) checks.push(nkitd.cluster);
  return checks;
}

export function doctorFailed(checks: readonly Check[]): boolean {
  return checks.some((c) => c.required && c.status === "fail");
}
