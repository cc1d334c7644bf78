// nkitd configuration: the YAML keys README.md ("Running nkitd") lists, a user contract. Every key is
// optional; a missing file means built-in defaults. Errors name the key, the bad value and the fix.
import { readFileSync } from "node:fs";
import { isAbsolute } from "node:path";
import { parse } from "yaml";
import { ConfigError } from "../errors.js";
import { parseCidr } from "../ipam/cidr.js";

export type DatapathSetting = "auto" | "netkit" | "veth";
export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

export interface NkitdConfig {
  datapath: DatapathSetting;
  podCIDRs: string[];
  uplinks: string[];
  mtu: number;
  bigTcp: boolean;
  paths: { state: string; run: string; bpffs: string };
  nri: { enabled: boolean; socket: string; index: string };
  log: { level: LogLevel };
  metrics: { listen: string };
}

export const DEFAULT_CONFIG_PATH = "/etc/nkit/nkitd.yaml";

export function defaultConfig(): NkitdConfig {
  return {
    datapath: "auto",
    podCIDRs: ["10.47.0.0/24", "fd47::/64"],
    uplinks: [],
    mtu: 0,
    bigTcp: true,
    paths: { state: "/var/lib/nkit", run: "/run/nkit", bpffs: "/sys/fs/bpf/nkit" },
    nri: { enabled: true, socket: "/var/run/nri/nri.sock", index: "10" },
    log: { level: "info" },
    metrics: { listen: "" },
  };
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const show = (v: unknown): string => JSON.stringify(v) ?? String(v);

function checkKeys(obj: Obj, prefix: string, known: readonly string[]): void {
  for (const k of Object.keys(obj)) {
    if (!known.includes(k)) {
      const key = prefix ? `${prefix}.${k}` : k;
      throw new ConfigError(key, "unknown key", `remove it; known keys here: ${known.join(", ")}`);
    }
  }
}

function section(raw: Obj, key: string, known: readonly string[]): Obj {
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

/** Validates a parsed config object (from YAML or tests) against the contract. */
export function validateConfig(raw: unknown): NkitdConfig {
  const d = defaultConfig();
  if (raw === undefined || raw === null) return d;
  if (!isObj(raw))
    throw new ConfigError("(root)", `expected a mapping, got ${show(raw)}`, "write key: value lines");
  checkKeys(raw, "", ["datapath", "podCIDRs", "uplinks", "mtu", "bigTcp", "paths", "nri", "log", "metrics"]);

  const datapath = raw.datapath ?? d.datapath;
  if (datapath !== "auto" && datapath !== "netkit" && datapath !== "veth") {
    throw new ConfigError("datapath", `${show(datapath)} is not a datapath mode`, "use auto, netkit or veth");
  }

  let podCIDRs = d.podCIDRs;
  if (raw.podCIDRs !== undefined) {
    if (!Array.isArray(raw.podCIDRs) || raw.podCIDRs.length === 0 || raw.podCIDRs.length > 2) {
      throw new ConfigError(
        "podCIDRs",
        `expected a list of one or two CIDRs, got ${show(raw.podCIDRs)}`,
        'e.g. [10.47.0.0/24, "fd47::/64"]',
      );
    }
    const seen = new Set<number>();
    podCIDRs = raw.podCIDRs.map((c, i) => {
      if (typeof c !== "string")
        throw new ConfigError(`podCIDRs[${i}]`, `expected a string, got ${show(c)}`, "quote IPv6 CIDRs");
      let family: number;
      try {
        family = parseCidr(c).family;
      } catch (e) {
        throw new ConfigError(`podCIDRs[${i}]`, (e as Error).message, "give an address/prefix-length");
      }
      if (seen.has(family)) {
        throw new ConfigError(
          `podCIDRs[${i}]`,
          `a second IPv${family} CIDR (${c})`,
          "give at most one CIDR per family",
        );
      }
      seen.add(family);
      return c;
    });
  }

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

  const paths = section(raw, "paths", ["state", "run", "bpffs"]);
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
    },
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
