// nkitd configuration: the YAML keys README.md ("Running nkitd") lists, a user contract. Every key is
// optional; a missing file means built-in defaults. Errors name the key, the bad value and the fix.
import { readFileSync } from "node:fs";
import { isAbsolute } from "node:path";
import { parse } from "yaml";
import { ConfigError } from "../errors.js";
import {
  frontendId,
  lbEntries,
  parseServiceSpec,
  type ServiceSpec,
  ServiceSpecError,
} from "../services/spec.js";
import { IpAddress, IpPrefix } from "../util/ip.js";
import { isObj, type JsonObject, show } from "../util/json.js";

export type DatapathSetting = "auto" | "netkit" | "veth";
export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

export interface NkitdConfig {
  datapath: DatapathSetting;
  podCIDRs: string[];
  uplinks: string[];
  mtu: number;
  bigTcp: boolean;
  paths: {
    state: string;
    run: string;
    bpffs: string;
    /** Watched directory of service files (one YAML service per file). */
    services: string;
    /** cgroup v2 directory the socket load-balancer attaches to; "" = the host's cgroup2 mount. */
    cgroup: string;
  };
  /** Where services without a VIP of their own get one (Nomad). */
  serviceCIDRs: string[];
  services: ServiceSpec[];
  masquerade: MasqueradeConfig;
  /** Capacities of the shared BPF maps and the Maglev table size; a change applies at the next start. */
  limits: LimitsConfig;
  /** Seconds a translated flow (load-balanced or masqueraded) may stay idle, by state. */
  timeouts: TimeoutsConfig;
  nri: { enabled: boolean; socket: string; index: string };
  log: { level: LogLevel };
  metrics: { listen: string };
}

export interface MasqueradeConfig {
  /** Masquerade IPv4 pod traffic leaving through an uplink. */
  enabled: boolean;
  /** IPv6 too (the pods' host devices forward IPv6, which is all bpf_fib_lookup asks for). */
  ipv6: boolean;
  /** Destinations that keep the pod's address, besides the pod and service CIDRs. */
  nonMasqueradeCIDRs: string[];
  /** Source ports masqueraded flows get, inclusive. */
  portRange: [number, number];
}

export interface LimitsConfig {
  /** Frontends (VIP:port/protocol, host ports included): nk_lb_services. */
  services: number;
  /** Backend slots over all frontends: nk_lb_backends (and its per-backend counters). */
  backends: number;
  /** Translated flows, two entries each (load-balanced per packet and masqueraded): nk_lb_ct. */
  conntrack: number;
  /** Frontends load-balanced per packet (host ports, external VIPs), one Maglev table each: nk_lb_maglev. */
  externalFrontends: number;
  /** Entries of each Maglev table (4 bytes each): a prime of MAGLEV_PRIMES. */
  maglevTableSize: number;
}

export interface TimeoutsConfig {
  tcpEstablished: number;
  tcpOpening: number;
  tcpClosing: number;
  /** UDP and ICMP flows. */
  udp: number;
}

/** Maglev table sizes nkit accepts: the usual primes (Maglev's M must be prime, ≫ backends). */
export const MAGLEV_PRIMES = [251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071] as const;

export const DEFAULT_CONFIG_PATH = "/etc/nkit/nkitd.yaml";

export function defaultConfig(): NkitdConfig {
  return {
    datapath: "auto",
    podCIDRs: ["10.47.0.0/24", "fd47::/64"],
    uplinks: [],
    mtu: 0,
    bigTcp: true,
    paths: {
      state: "/var/lib/nkit",
      run: "/run/nkit",
      bpffs: "/sys/fs/bpf/nkit",
      services: "/etc/nkit/services.d",
      cgroup: "",
    },
    serviceCIDRs: ["10.96.0.0/16", "fd96::/112"],
    services: [],
    masquerade: { enabled: true, ipv6: false, nonMasqueradeCIDRs: [], portRange: [32768, 65535] },
    limits: {
      services: 65536,
      backends: 262144,
      conntrack: 262144,
      externalFrontends: 8192,
      maglevTableSize: 16381,
    },
    timeouts: { tcpEstablished: 21600, tcpOpening: 60, tcpClosing: 10, udp: 300 },
    nri: { enabled: true, socket: "/var/run/nri/nri.sock", index: "10" },
    log: { level: "info" },
    metrics: { listen: "" },
  };
}

function checkKeys(obj: JsonObject, prefix: string, known: readonly string[]): void {
  for (const k of Object.keys(obj)) {
    if (!known.includes(k)) {
      const key = prefix ? `${prefix}.${k}` : k;
      throw new ConfigError(key, "unknown key", `remove it; known keys here: ${known.join(", ")}`);
    }
  }
}

function section(raw: JsonObject, key: string, known: readonly string[]): JsonObject {
  const v = raw[key];
  if (v === undefined || v === null) return {};
  if (!isObj(v))
    throw new ConfigError(key, `expected a mapping, got ${show(v)}`, `write it as "${key}: {...}"`);
  checkKeys(v, key, known);
  return v;
}

function str(v: unknown, key: string, fallback: string): string {
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "string")
    throw new ConfigError(key, `expected a string, got ${show(v)}`, "quote the value");
  return v;
}

function absPath(v: unknown, key: string, fallback: string): string {
  const p = str(v, key, fallback);
  if (!isAbsolute(p))
    throw new ConfigError(key, `"${p}" is not an absolute path`, "give a path starting with /");
  return p;
}

/** An absolute path, or "" for "find it on the host". */
function optionalAbsPath(v: unknown, key: string): string {
  const p = str(v, key, "");
  return p === "" ? "" : absPath(p, key, "");
}

/** A list of at most one CIDR per family (podCIDRs, serviceCIDRs). */
function cidrList(v: unknown, key: string, fallback: string[], example: string): string[] {
  if (v === undefined) return fallback;
  if (!Array.isArray(v) || v.length === 0 || v.length > 2) {
    throw new ConfigError(key, `expected a list of one or two CIDRs, got ${show(v)}`, example);
  }
  const seen = new Set<number>();
  return v.map((c, i) => {
    if (typeof c !== "string")
      throw new ConfigError(`${key}[${i}]`, `expected a string, got ${show(c)}`, "quote IPv6 CIDRs");
    let family: number;
    try {
      family = IpPrefix.parse(c).family;
    } catch (e) {
      throw new ConfigError(`${key}[${i}]`, (e as Error).message, "give an address/prefix-length");
    }
    if (seen.has(family)) {
      throw new ConfigError(
        `${key}[${i}]`,
        `a second IPv${family} CIDR (${c})`,
        "give at most one CIDR per family",
      );
    }
    seen.add(family);
    return c;
  });
}

function flag(v: unknown, key: string, fallback: boolean): boolean {
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "boolean")
    throw new ConfigError(key, `expected true or false, got ${show(v)}`, "use true or false");
  return v;
}

function masqueradeSection(m: JsonObject, d: MasqueradeConfig): MasqueradeConfig {
  let nonMasq = d.nonMasqueradeCIDRs;
  if (m.nonMasqueradeCIDRs !== undefined && m.nonMasqueradeCIDRs !== null) {
    if (!Array.isArray(m.nonMasqueradeCIDRs)) {
      throw new ConfigError(
        "masquerade.nonMasqueradeCIDRs",
        `expected a list of CIDRs, got ${show(m.nonMasqueradeCIDRs)}`,
        'e.g. [192.168.0.0/16, "fd00::/8"]',
      );
    }
    nonMasq = m.nonMasqueradeCIDRs.map((c: unknown, i: number) => {
      const key = `masquerade.nonMasqueradeCIDRs[${i}]`;
      if (typeof c !== "string")
        throw new ConfigError(key, `expected a string, got ${show(c)}`, "quote IPv6 CIDRs");
      try {
        IpPrefix.parse(c);
      } catch (e) {
        throw new ConfigError(key, (e as Error).message, "give an address/prefix-length");
      }
      return c;
    });
  }
  let portRange = d.portRange;
  if (m.portRange !== undefined && m.portRange !== null) {
    const match = typeof m.portRange === "string" ? /^(\d{1,5})-(\d{1,5})$/.exec(m.portRange) : null;
    const lo = Number(match?.[1]);
    const hi = Number(match?.[2]);
    if (!match || lo < 1024 || hi > 65535 || lo > hi) {
      throw new ConfigError(
        "masquerade.portRange",
        `${show(m.portRange)} is not a port range`,
        'use "LOW-HIGH" within 1024-65535, e.g. "32768-65535"',
      );
    }
    portRange = [lo, hi];
  }
  return {
    enabled: flag(m.enabled, "masquerade.enabled", d.enabled),
    ipv6: flag(m.ipv6, "masquerade.ipv6", d.ipv6),
    nonMasqueradeCIDRs: nonMasq,
    portRange,
  };
}

function whole(v: unknown, key: string, fallback: number, min: number, max: number, unit: string): number {
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    throw new ConfigError(key, `${show(v)} is not a count of ${unit}`, `use a whole number ${min}..${max}`);
  }
  return v;
}

function limitsSection(l: JsonObject, d: LimitsConfig): LimitsConfig {
  const m = whole(l.maglevTableSize, "limits.maglevTableSize", d.maglevTableSize, 1, 1 << 20, "entries");
  if (!(MAGLEV_PRIMES as readonly number[]).includes(m)) {
    throw new ConfigError(
      "limits.maglevTableSize",
      `${m} is not one of the Maglev primes`,
      `use one of ${MAGLEV_PRIMES.join(", ")} (about 100 times the backends of a frontend)`,
    );
  }
  return {
    services: whole(l.services, "limits.services", d.services, 16, 1 << 22, "frontends"),
    backends: whole(l.backends, "limits.backends", d.backends, 16, 1 << 24, "backend slots"),
    conntrack: whole(l.conntrack, "limits.conntrack", d.conntrack, 1024, 1 << 26, "entries"),
    externalFrontends: whole(
      l.externalFrontends,
      "limits.externalFrontends",
      d.externalFrontends,
      16,
      1 << 20,
      "frontends",
    ),
    maglevTableSize: m,
  };
}

function timeoutsSection(t: JsonObject, d: TimeoutsConfig): TimeoutsConfig {
  const week = 7 * 86400;
  return {
    tcpEstablished: whole(t.tcpEstablished, "timeouts.tcpEstablished", d.tcpEstablished, 1, week, "seconds"),
    tcpOpening: whole(t.tcpOpening, "timeouts.tcpOpening", d.tcpOpening, 1, week, "seconds"),
    tcpClosing: whole(t.tcpClosing, "timeouts.tcpClosing", d.tcpClosing, 1, week, "seconds"),
    udp: whole(t.udp, "timeouts.udp", d.udp, 1, week, "seconds"),
  };
}

/** The static services; a VIP inside a pod CIDR would shadow a pod, so it is refused. */
function serviceList(v: unknown, podCIDRs: readonly string[]): ServiceSpec[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) {
    throw new ConfigError(
      "services",
      `expected a list, got ${show(v)}`,
      "write one `- name: ...` entry per service",
    );
  }
  const names = new Set<string>();
  const frontends = new Map<string, string>();
  return v.map((item, i) => {
    let spec: ServiceSpec;
    try {
      spec = parseServiceSpec(item, `services[${i}]`);
    } catch (e) {
      if (e instanceof ServiceSpecError) throw new ConfigError(e.key, e.problem, e.fix);
      throw e;
    }
    if (names.has(spec.name)) {
      throw new ConfigError(
        `services[${i}].name`,
        `${spec.name} is used twice`,
        "give each service its own name",
      );
    }
    names.add(spec.name);
    for (const e of lbEntries(spec)) {
      const owner = frontends.get(frontendId(e));
      if (owner !== undefined) {
        throw new ConfigError(
          `services[${i}]`,
          `${frontendId(e)} is already the frontend of ${owner}`,
          "use another VIP or port",
        );
      }
      frontends.set(frontendId(e), spec.name);
    }
    const vip = IpAddress.parse(spec.vip);
    const pod = podCIDRs.map((c) => IpPrefix.parse(c)).find((c) => c.contains(vip));
    if (pod) {
      throw new ConfigError(
        `services[${i}].vip`,
        `${spec.vip} lies in the pod CIDR ${pod.text}`,
        "take VIPs from serviceCIDRs",
      );
    }
    return spec;
  });
}

/** Validates a parsed config object (from YAML or tests) against the contract. */
export function validateConfig(raw: unknown): NkitdConfig {
  const d = defaultConfig();
  if (raw === undefined || raw === null) return d;
  if (!isObj(raw))
    throw new ConfigError("(root)", `expected a mapping, got ${show(raw)}`, "write key: value lines");
  checkKeys(raw, "", [
    "datapath",
    "podCIDRs",
    "uplinks",
    "mtu",
    "bigTcp",
    "paths",
    "serviceCIDRs",
    "services",
    "masquerade",
    "limits",
    "timeouts",
    "nri",
    "log",
    "metrics",
  ]);

  const datapath = raw.datapath ?? d.datapath;
  if (datapath !== "auto" && datapath !== "netkit" && datapath !== "veth") {
    throw new ConfigError("datapath", `${show(datapath)} is not a datapath mode`, "use auto, netkit or veth");
  }

  const podCIDRs = cidrList(raw.podCIDRs, "podCIDRs", d.podCIDRs, 'e.g. [10.47.0.0/24, "fd47::/64"]');
  const serviceCIDRs = cidrList(
    raw.serviceCIDRs,
    "serviceCIDRs",
    d.serviceCIDRs,
    'e.g. [10.96.0.0/16, "fd96::/112"]',
  );
  for (const [i, svc] of serviceCIDRs.entries()) {
    const pod = podCIDRs.find((p) => IpPrefix.parse(p).overlaps(IpPrefix.parse(svc)));
    if (pod) {
      throw new ConfigError(
        `serviceCIDRs[${i}]`,
        `${svc} overlaps the pod CIDR ${pod}`,
        "give VIPs a range of their own",
      );
    }
  }
  const services = serviceList(raw.services, podCIDRs);

  let uplinks = d.uplinks;
  if (raw.uplinks !== undefined && raw.uplinks !== null) {
    if (
      !Array.isArray(raw.uplinks) ||
      !raw.uplinks.every((u) => typeof u === "string" && /^[^\s/]{1,15}$/.test(u))
    ) {
      throw new ConfigError(
        "uplinks",
        `expected a list of interface names, got ${show(raw.uplinks)}`,
        "e.g. [eth0]",
      );
    }
    uplinks = raw.uplinks as string[];
  }

  const mtu = raw.mtu ?? d.mtu;
  if (typeof mtu !== "number" || !Number.isInteger(mtu) || (mtu !== 0 && (mtu < 576 || mtu > 65535))) {
    throw new ConfigError(
      "mtu",
      `${show(mtu)} is not a usable MTU`,
      "use 0 (follow the uplink) or 576..65535",
    );
  }
  const bigTcp = raw.bigTcp ?? d.bigTcp;
  if (typeof bigTcp !== "boolean")
    throw new ConfigError("bigTcp", `expected true or false, got ${show(bigTcp)}`, "use true or false");

  const paths = section(raw, "paths", ["state", "run", "bpffs", "services", "cgroup"]);
  const masquerade = masqueradeSection(
    section(raw, "masquerade", ["enabled", "ipv6", "nonMasqueradeCIDRs", "portRange"]),
    d.masquerade,
  );
  const limits = limitsSection(
    section(raw, "limits", ["services", "backends", "conntrack", "externalFrontends", "maglevTableSize"]),
    d.limits,
  );
  const timeouts = timeoutsSection(
    section(raw, "timeouts", ["tcpEstablished", "tcpOpening", "tcpClosing", "udp"]),
    d.timeouts,
  );
  const nri = section(raw, "nri", ["enabled", "socket", "index"]);
  const log = section(raw, "log", ["level"]);
  const metrics = section(raw, "metrics", ["listen"]);

  const nriEnabled = nri.enabled ?? d.nri.enabled;
  if (typeof nriEnabled !== "boolean")
    throw new ConfigError(
      "nri.enabled",
      `expected true or false, got ${show(nriEnabled)}`,
      "use true or false",
    );
  const nriIndex =
    typeof nri.index === "number" ? String(nri.index) : str(nri.index, "nri.index", d.nri.index);
  if (!/^\d{2}$/.test(nriIndex))
    throw new ConfigError("nri.index", `"${nriIndex}" is not a two-digit index`, 'use e.g. "10"');
  const level = str(log.level, "log.level", d.log.level);
  const levels = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];
  if (!levels.includes(level))
    throw new ConfigError("log.level", `"${level}" is not a log level`, `use one of ${levels.join(", ")}`);
  const listen = str(metrics.listen, "metrics.listen", d.metrics.listen);
  if (listen && !/^(\[[0-9a-fA-F:]+\]|[0-9.]+|localhost):\d{1,5}$/.test(listen)) {
    throw new ConfigError(
      "metrics.listen",
      `"${listen}" is not host:port`,
      'use e.g. "127.0.0.1:9965", or "" to disable',
    );
  }

  return {
    datapath,
    podCIDRs,
    uplinks,
    mtu,
    bigTcp,
    paths: {
      state: absPath(paths.state, "paths.state", d.paths.state),
      run: absPath(paths.run, "paths.run", d.paths.run),
      bpffs: absPath(paths.bpffs, "paths.bpffs", d.paths.bpffs),
      services: absPath(paths.services, "paths.services", d.paths.services),
      cgroup: optionalAbsPath(paths.cgroup, "paths.cgroup"),
    },
    serviceCIDRs,
    services,
    masquerade,
    limits,
    timeouts,
    nri: { enabled: nriEnabled, socket: absPath(nri.socket, "nri.socket", d.nri.socket), index: nriIndex },
    log: { level: level as LogLevel },
    metrics: { listen },
  };
}

/** Loads the file; a missing file at the default path means defaults, elsewhere it is an error. */
export function loadConfig(path: string | undefined): NkitdConfig {
  const file = path ?? DEFAULT_CONFIG_PATH;
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT" && path === undefined) return defaultConfig();
    throw new ConfigError("--config", `cannot read ${file}: ${(e as Error).message}`, "check the path");
  }
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (e) {
    throw new ConfigError("(file)", `${file} is not valid YAML: ${(e as Error).message}`, "fix the syntax");
  }
  return validateConfig(raw);
}
