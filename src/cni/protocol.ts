// The socket protocol between nkit-cni (native/cni/) and nkitd's CNI endpoint, and the
// typed validation of what arrives over it. The C side mirrors this file; change both together.
//
// Transport: a unix stream socket, by default /run/nkit/cni.sock (nkitd: <paths.run>/cni.sock;
// the shim: the conflist key "socket"), mode 0600 owned by root. ONE request per connection.
//
// Framing: newline-delimited JSON. The shim writes one JSON object on one line followed by "\n"
// (it minifies the network configuration, and JSON strings cannot hold a raw newline, so the line
// is unambiguous). nkitd also accepts EOF as the end of the request. nkitd writes one JSON line and
// closes the connection. Requests are limited to MAX_REQUEST_BYTES.
//
// Request (version 1):
//   {"v":1, "command":"ADD"|"DEL"|"CHECK"|"STATUS"|"GC",
//    "containerId":CNI_CONTAINERID, "netns":CNI_NETNS, "ifName":CNI_IFNAME,
//    "args":CNI_ARGS (raw "K=V;K2=V2"), "path":CNI_PATH, "config":{network configuration from stdin}}
//   (absent environment variables are sent as "").
// Response:
//   {"ok":true,"result":{CNI result}}  ADD: the shim prints `result` and exits 0
//   {"ok":true}                        DEL, CHECK, STATUS, GC: the shim prints nothing, exits 0
//   {"ok":false,"error":{"cniVersion","code","msg","details"}}  printed as is, exit 1
//
// VERSION never reaches nkitd: the shim answers it. A shim run without CNI_COMMAND prints
// "CNI nkit-cni plugin vX.Y.Z" (Nomad's plugin fingerprint).
//
// DEL while nkitd is down: containerd, nerdctl and Nomad tear a container down whether or not nkitd
// runs, and a failing DEL makes them retry forever (CRI: the pod cannot be stopped or removed). So
// when the socket does not exist or refuses connections, the shim writes the DEL request line to
// <socket dir>/cni-del-queue/del-<fnv64(containerId, ifName)>.json (0600, temp file + rename),
// tries the socket once more and exits 0. nkitd replays that queue when it starts (before it
// listens) and before serving every request, so a queued DEL always runs before a later ADD of the
// same container. The kernel removes a pod's devices with its netns anyway; the queue is what keeps
// IPAM reservations and records from leaking. A DEL that reaches nkitd but times out fails with 11.
//
// Timeouts (shim): connect 2 s; the whole call "timeoutMs" from the network configuration
// (default 30000, 1..600000). nkitd drops a connection that sends no complete request in 10 s.
import { IpAddress } from "../util/ip.js";
import { isObj, type JsonObject, show } from "../util/json.js";
import { CniCode, CniError } from "./codes.js";
import type { CniResult } from "./result.js";

export const PROTOCOL_VERSION = 1;
export const MAX_REQUEST_BYTES = 1 << 20;
export const DEFAULT_SOCKET = "/run/nkit/cni.sock";
export const DEL_QUEUE_DIR = "cni-del-queue";
/** CNI spec versions nkit-cni speaks (kept equal to cni_supported_versions in native/cni/cni.c; test/integration/cni-shim-input.test.ts compares them). */
export const SUPPORTED_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];

export type CniCommand = "ADD" | "DEL" | "CHECK" | "STATUS" | "GC";
const COMMANDS: readonly string[] = ["ADD", "DEL", "CHECK", "STATUS", "GC"];

/** ipam: allocate and report addresses (the NRI hook wires later); wire: full wiring at ADD. */
export type CniMode = "ipam" | "wire";

/**
 * One host port of the portMappings capability. hostIP absent, "0.0.0.0" or "::" = every host
 * address of both families the pod has, loopback included (nerdctl sends `-p 8080:80` as
 * "0.0.0.0", and Docker publishes such a port on IPv4 and IPv6); 127.0.0.1 / ::1 = loopback only;
 * any other address = only that address.
 */
export interface PortMapping {
  hostPort: number;
  containerPort: number;
  protocol: "tcp" | "udp" | "sctp";
  hostIP?: string;
}

export interface ValidAttachment {
  containerID: string;
  ifname: string;
}

/** The parts of the network configuration nkitd acts on, validated. */
export interface NetConf {
  cniVersion: CniVersion;
  name: string;
  mode: CniMode;
  /** Addresses asked for: runtimeConfig.ips, then args.cni.ips, then CNI_ARGS IP=; one per family. */
  requestedIps: { ipv4?: string; ipv6?: string };
  portMappings: PortMapping[];
  /** args.cni.labels entries. */
  labels: Record<string, string>;
  prevResult?: CniResult;
  /** GC only: cni.dev/valid-attachments. */
  validAttachments?: ValidAttachment[];
  /** The whole configuration as received. */
  raw: Record<string, unknown>;
}

export interface CniRequest {
  command: CniCommand;
  containerId: string;
  netns: string;
  ifName: string;
  /** CNI_ARGS parsed: every pair except IgnoreUnknown, IP and MAC (K8S_POD_*, NOMAD_*, ...). */
  argLabels: Record<string, string>;
  path: string;
  config: NetConf;
}

export type CniResponse =
  | { ok: true; result?: CniResult }
  | { ok: false; error: { cniVersion: string; code: number; msg: string; details: string } };

const CONTAINER_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** A Linux interface name as the CNI spec defines it (IFNAMSIZ, no "/", ":" or whitespace). */
export function isValidIfName(name: string): boolean {
  return name.length > 0 && name.length <= 15 && name !== "." && name !== ".." && !/[/:\s]/.test(name);
}

function envError(msg: string, details = ""): CniError {
  return new CniError(CniCode.INVALID_ENV, msg, details);
}
function configError(msg: string, details = ""): CniError {
  return new CniError(CniCode.INVALID_CONFIG, `network configuration: ${msg}`, details);
}

/** The cniVersion to answer errors with, from a request that may be invalid. */
export function versionOf(raw: unknown): string {
  if (isObj(raw) && isObj(raw.config)) {
    const v = raw.config.cniVersion;
    if (typeof v === "string" && (SUPPORTED_VERSIONS as readonly string[]).includes(v)) return v;
  }
  return "1.1.0";
}

export function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** Parses CNI_ARGS ("K=V;K2=V2"). IgnoreUnknown=1|true is accepted (every other key is a label). */
export function parseCniArgs(text: string): { labels: Record<string, string>; ips: string[] } {
  const labels: Record<string, string> = {};
  const ips: string[] = [];
  for (const part of text.split(";")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    if (eq <= 0) {
      throw envError(`CNI_ARGS: "${part}" is not KEY=VALUE`, `CNI_ARGS was "${text}"`);
    }
    const key = part.slice(0, eq);
    const value = part.slice(eq + 1);
    if (key === "IgnoreUnknown") {
      if (!/^(1|0|true|false)$/i.test(value)) {
        throw envError(`CNI_ARGS: IgnoreUnknown="${value}" is not a boolean`, "use 1, true, 0 or false");
      }
      continue;
    }
    if (key === "IP") {
      ips.push(...value.split(",").filter((s) => s !== ""));
      continue;
    }
    if (key === "MAC") continue; // nkit does not set MACs; nerdctl only sends it for bridge networks
    labels[key] = value;
  }
  return { labels, ips };
}

function stringList(v: unknown, key: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) {
    throw configError(`"${key}" must be a list of strings, got ${show(v)}`);
  }
  return v as string[];
}

/** Strips a prefix length ("10.47.0.9/24" -> "10.47.0.9") and checks the address. */
function plainIp(text: string, source: string): { family: 4 | 6; ip: string } {
  const slash = text.indexOf("/");
  const ip = slash >= 0 ? text.slice(0, slash) : text;
  if (slash >= 0 && !/^\d{1,3}$/.test(text.slice(slash + 1))) {
    throw configError(`${source}: "${text}" is not an address or address/prefix`);
  }
  const family = IpAddress.tryParse(ip)?.family;
  if (family === undefined) throw configError(`${source}: "${text}" is not an IP address`);
  return { family, ip };
}

function pickIps(sources: { name: string; ips: string[] }[]): { ipv4?: string; ipv6?: string } {
  const out: { ipv4?: string; ipv6?: string } = {};
  for (const src of sources) {
    const seen: Partial<Record<4 | 6, string>> = {};
    for (const text of src.ips) {
      const { family, ip } = plainIp(text, src.name);
      if (seen[family] !== undefined) {
        throw configError(
          `${src.name}: more than one IPv${family} address (${seen[family]}, ${ip})`,
          "nkit assigns one address per family",
        );
      }
      seen[family] = ip;
      const key = family === 4 ? "ipv4" : "ipv6";
      if (out[key] === undefined) out[key] = ip;
    }
  }
  return out;
}

/**
 * A key of a runtime-built object, looked up the way Go's encoding/json decodes into a struct: the
 * exact spelling first, then any spelling that differs only in case. containerd's go-cni (used by
 * containerd's CRI, nerdctl and Nomad) marshals its PortMapping struct, which has no JSON tags, so
 * the wire carries "HostPort", "ContainerPort", "Protocol", "HostIP"; the CNI conventions document
 * "hostPort", "containerPort", "protocol", "hostIP". Both must work, as they do for Go plugins.
 */
function foldedField(m: JsonObject, key: string, where: string): unknown {
  const lower = key.toLowerCase();
  const spellings = Object.keys(m).filter((k) => k.toLowerCase() === lower);
  if (spellings.length === 0) return undefined;
  const values = new Set(spellings.map((k) => show(m[k])));
  if (values.size > 1) {
    throw configError(
      `${where} has conflicting ${spellings.map((k) => `"${k}"`).join(" and ")}`,
      `values ${[...values].join(", ")}; send one of them`,
    );
  }
  return m[spellings.includes(key) ? key : (spellings[0] as string)];
}

function portMappings(v: unknown): PortMapping[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw configError(`runtimeConfig.portMappings must be a list, got ${show(v)}`);
  return v.map((m, i) => {
    const where = `runtimeConfig.portMappings[${i}]`;
    if (!isObj(m)) throw configError(`${where} must be an object, got ${show(m)}`);
    const field = (k: string): unknown => foldedField(m, k, where);
    const port = (k: string): number => {
      const x = field(k);
      if (typeof x !== "number" || !Number.isInteger(x) || x < 1 || x > 65535) {
        throw configError(
          `${where}.${k} must be a port number 1..65535, got ${show(x)}`,
          `the mapping was ${show(m)}`,
        );
      }
      return x;
    };
    const rawProto = field("protocol");
    // go-cni and Nomad always name it; "" or absent means TCP, as in the portmap plugin.
    const protocol = (rawProto === undefined || rawProto === "" ? "tcp" : String(rawProto)).toLowerCase();
    if (protocol !== "tcp" && protocol !== "udp" && protocol !== "sctp") {
      throw configError(`${where}.protocol must be tcp, udp or sctp, got ${show(rawProto)}`);
    }
    const out: PortMapping = {
      hostPort: port("hostPort"),
      containerPort: port("containerPort"),
      protocol,
    };
    const hostIP = field("hostIP");
    if (hostIP !== undefined && hostIP !== null && typeof hostIP !== "string") {
      throw configError(`${where}.hostIP must be a string, got ${show(hostIP)}`);
    }
    if (typeof hostIP === "string" && hostIP !== "") {
      if (!IpAddress.tryParse(hostIP)) {
        throw configError(`${where}.hostIP "${hostIP}" is not an IP address`);
      }
      out.hostIP = hostIP;
    }
    return out;
  });
}

function prevResultOf(v: unknown): CniResult | undefined {
  if (v === undefined || v === null) return undefined;
  const bad = (why: string) => new CniError(CniCode.DECODE, `prevResult is malformed: ${why}`);
  if (!isObj(v)) throw bad(`expected an object, got ${show(v)}`);
  for (const key of ["interfaces", "ips", "routes"] as const) {
    const list = v[key];
    if (list === undefined) continue;
    if (!Array.isArray(list) || !list.every(isObj)) throw bad(`"${key}" must be a list of objects`);
  }
  const ips = (v.ips ?? []) as JsonObject[];
  for (const ip of ips) {
    if (typeof ip.address !== "string") throw bad(`an ips entry has no "address": ${show(ip)}`);
  }
  const ifs = (v.interfaces ?? []) as JsonObject[];
  for (const i of ifs) {
    if (typeof i.name !== "string") throw bad(`an interfaces entry has no "name": ${show(i)}`);
  }
  if (v.dns !== undefined && !isObj(v.dns)) throw bad(`"dns" must be an object`);
  return v as unknown as CniResult;
}

function validAttachments(v: unknown): ValidAttachment[] {
  if (!Array.isArray(v)) {
    throw configError(
      `GC needs "cni.dev/valid-attachments" (a list of {containerID, ifname}), got ${show(v)}`,
      "without it nkit would not know what to keep",
    );
  }
  return v.map((a, i) => {
    if (!isObj(a) || typeof a.containerID !== "string" || typeof a.ifname !== "string") {
      throw configError(`cni.dev/valid-attachments[${i}] must be {containerID, ifname}, got ${show(a)}`);
    }
    return { containerID: a.containerID, ifname: a.ifname };
  });
}

/** Validates the network configuration (stdin) for a command. */
export function parseNetConf(raw: unknown, command: CniCommand, cniArgIps: string[] = []): NetConf {
  if (!isObj(raw)) {
    throw new CniError(CniCode.DECODE, "the network configuration is not a JSON object", show(raw));
  }
  const v = raw.cniVersion;
  if (typeof v !== "string") throw configError(`"cniVersion" is missing or not a string`);
  if (!(SUPPORTED_VERSIONS as readonly string[]).includes(v)) {
    throw new CniError(
      CniCode.INCOMPATIBLE_VERSION,
      `CNI version ${v} is not supported by nkit-cni`,
      `supported versions: ${SUPPORTED_VERSIONS.join(", ")}`,
    );
  }
  const cniVersion = v as CniVersion;
  if (typeof raw.name !== "string" || raw.name === "") {
    throw configError(`"name" is missing`, "the runtime injects the network name; check the conflist");
  }
  const mode = raw.mode ?? "wire";
  if (mode !== "ipam" && mode !== "wire") {
    throw configError(
      `unknown mode ${show(mode)}`,
      'use "ipam" (CRI with nkitd\'s NRI plugin) or "wire" (nerdctl, Nomad: wiring at ADD)',
    );
  }
  if (raw.socket !== undefined && (typeof raw.socket !== "string" || !raw.socket.startsWith("/"))) {
    throw configError(`"socket" must be an absolute path, got ${show(raw.socket)}`);
  }
  const rc = raw.runtimeConfig ?? {};
  if (!isObj(rc)) throw configError(`"runtimeConfig" must be an object, got ${show(rc)}`);
  const args = raw.args ?? {};
  if (!isObj(args)) throw configError(`"args" must be an object, got ${show(args)}`);
  const cniArgs = args.cni ?? {};
  if (!isObj(cniArgs)) throw configError(`"args.cni" must be an object, got ${show(cniArgs)}`);

  const requestedIps = pickIps([
    { name: "runtimeConfig.ips", ips: stringList(rc.ips, "runtimeConfig.ips") },
    { name: "args.cni.ips", ips: stringList(cniArgs.ips, "args.cni.ips") },
    { name: "CNI_ARGS IP", ips: cniArgIps },
  ]);
  const labels: Record<string, string> = {};
  if (cniArgs.labels !== undefined) {
    if (!Array.isArray(cniArgs.labels)) throw configError(`"args.cni.labels" must be a list`);
    for (const [i, l] of cniArgs.labels.entries()) {
      if (!isObj(l) || typeof l.key !== "string" || typeof l.value !== "string") {
        throw configError(`args.cni.labels[${i}] must be {key, value} strings, got ${show(l)}`);
      }
      labels[l.key] = l.value;
    }
  }
  const conf: NetConf = {
    cniVersion,
    name: raw.name,
    mode,
    requestedIps,
    portMappings: portMappings(rc.portMappings),
    labels,
    raw,
  };
  const prev = prevResultOf(raw.prevResult);
  if (prev) conf.prevResult = prev;
  if (command === "GC") conf.validAttachments = validAttachments(raw["cni.dev/valid-attachments"]);
  if (command === "CHECK") {
    if (compareVersions(cniVersion, "0.4.0") < 0) {
      throw new CniError(
        CniCode.INCOMPATIBLE_VERSION,
        `CHECK needs cniVersion 0.4.0 or later, the configuration says ${cniVersion}`,
      );
    }
    if (!conf.prevResult)
      throw configError("CHECK needs prevResult", "the runtime passes the cached ADD result");
  }
  return conf;
}

/** Parses and validates one request line from the shim. */
export function parseRequest(line: string): CniRequest {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch (e) {
    throw new CniError(CniCode.DECODE, "the request from nkit-cni is not JSON", (e as Error).message);
  }
  if (!isObj(raw)) throw new CniError(CniCode.PROTOCOL, "the request from nkit-cni is not a JSON object");
  if (raw.v !== PROTOCOL_VERSION) {
    throw new CniError(
      CniCode.PROTOCOL,
      `nkit-cni speaks protocol version ${show(raw.v)}, nkitd speaks ${PROTOCOL_VERSION}`,
      "install the nkit-cni binary from the same nkit release as nkitd",
    );
  }
  const str = (key: string): string => {
    const v = raw[key] ?? "";
    if (typeof v !== "string") {
      throw new CniError(CniCode.PROTOCOL, `request field "${key}" must be a string, got ${show(v)}`);
    }
    return v;
  };
  const command = str("command");
  if (!COMMANDS.includes(command)) {
    throw envError(
      `unknown CNI_COMMAND "${command}"`,
      "nkit-cni implements ADD, DEL, CHECK, STATUS, GC, VERSION",
    );
  }
  const cmd = command as CniCommand;
  const containerId = str("containerId");
  const netns = str("netns");
  const ifName = str("ifName");
  const perContainer = cmd === "ADD" || cmd === "DEL" || cmd === "CHECK";
  if (perContainer) {
    if (!containerId) throw envError(`CNI_CONTAINERID is required for ${cmd}`);
    if (!CONTAINER_ID_RE.test(containerId)) {
      throw envError(
        `CNI_CONTAINERID "${containerId}" is invalid`,
        "letters, digits, '_', '.' and '-', starting with a letter or digit",
      );
    }
    if (!ifName) throw envError(`CNI_IFNAME is required for ${cmd}`);
    if (!isValidIfName(ifName)) {
      throw envError(
        `CNI_IFNAME "${ifName}" is not a valid interface name`,
        "1-15 bytes, no '/', ':' or spaces",
      );
    }
  }
  if (cmd === "ADD" || cmd === "CHECK") {
    if (!netns) throw envError(`CNI_NETNS is required for ${cmd}`);
    if (!netns.startsWith("/")) throw envError(`CNI_NETNS "${netns}" is not an absolute path`);
  }
  const args = parseCniArgs(str("args"));
  return {
    command: cmd,
    containerId,
    netns,
    ifName,
    argLabels: args.labels,
    path: str("path"),
    config: parseNetConf(raw.config, cmd, args.ips),
  };
}
