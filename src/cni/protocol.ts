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
import { z } from "zod";
import { IpAddress } from "../util/ip.js";
import { show } from "../util/json.js";
import { asOne, jsonObject, orDefault, orEmpty, pathText, reportedIssue, voice } from "../util/schema.js";
import { CniCode, type CniCodeValue, CniError } from "./codes.js";
import type { CniResult } from "./result.js";

const PROTOCOL_VERSION = 1;
export const MAX_REQUEST_BYTES = 1 << 20;
export const DEL_QUEUE_DIR = "cni-del-queue";
/** CNI spec versions nkit-cni speaks (kept equal to cni_supported_versions in native/cni/cni.c; test/integration/cni-shim-input.test.ts compares them). */
export const SUPPORTED_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] as const;
type CniVersion = (typeof SUPPORTED_VERSIONS)[number];

const COMMANDS = ["ADD", "DEL", "CHECK", "STATUS", "GC"] as const;
export type CniCommand = (typeof COMMANDS)[number];

/**
 * How a container is wired. ipam: allocate and report addresses (the NRI hook wires later); wire:
 * full wiring at ADD.
 */
export type CniMode = Exclude<CniConfMode, "auto">;
/**
 * The conflist's `mode`: "auto" (the default, what `nkit install` writes) tells CRI sandboxes (the
 * runtime passes K8S_POD_* in CNI_ARGS) from every other caller (nerdctl, Nomad); "ipam" and "wire"
 * force one flow.
 */
export type CniConfMode = z.output<typeof cniMode>;

/**
 * One host port of the portMappings capability. hostIP absent, "0.0.0.0" or "::" = every host
 * address of both families the pod has, loopback included (nerdctl sends `-p 8080:80` as
 * "0.0.0.0", and Docker publishes such a port on IPv4 and IPv6); 127.0.0.1 / ::1 = loopback only;
 * any other address = only that address.
 */
export interface PortMapping {
  hostPort: number;
  containerPort: number;
  protocol: (typeof PROTOCOLS)[number];
  hostIP?: string;
}

type ValidAttachment = z.output<typeof validAttachment>;

/** The parts of the network configuration nkitd acts on, validated. */
export interface NetConf {
  cniVersion: CniVersion;
  name: string;
  mode: CniConfMode;
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
function isValidIfName(name: string): boolean {
  return name.length > 0 && name.length <= 15 && name !== "." && name !== ".." && !/[/:\s]/.test(name);
}

function envError(msg: string, details = ""): CniError {
  return new CniError(CniCode.INVALID_ENV, msg, details);
}
function configError(msg: string, details = ""): CniError {
  return new CniError(CniCode.INVALID_CONFIG, `network configuration: ${msg}`, details);
}

/** What a CNI error says: its code, the one-line message and the details. */
const cniVoice = voice(
  z.object({ code: z.literal(Object.values(CniCode)), msg: z.string(), details: z.string() }),
  (issue) => ({ code: CniCode.INVALID_CONFIG, msg: `network configuration: ${issue.message}`, details: "" }),
);

type Quote = (input: unknown, at: string) => string;

/** An error parameter: code, message and details of a bad value (`at`: its path from the parse root). */
function says(code: CniCodeValue, msg: Quote, details: string | ((input: unknown) => string) = "") {
  return cniVoice.says((input, path) => ({
    code,
    msg: msg(input, pathText(path)),
    details: typeof details === "string" ? details : details(input),
  }));
}

/** A mistake in the network configuration (code 7). */
const misconfigured = (msg: Quote, details: string | ((input: unknown) => string) = "") =>
  says(CniCode.INVALID_CONFIG, (input, at) => `network configuration: ${msg(input, at)}`, details);

function cniError(error: z.ZodError): CniError {
  const { code, msg, details } = cniVoice.heard(reportedIssue(error));
  return new CniError(code, msg, details);
}

const requestVersion = z.object({ config: z.object({ cniVersion: z.enum(SUPPORTED_VERSIONS) }) });

/** The cniVersion to answer errors with, from a request that may be invalid. */
export function versionOf(raw: unknown): string {
  return requestVersion.safeParse(raw).data?.config.cniVersion ?? "1.1.0";
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
 * Which keys of `m` name `key` the way Go's encoding/json decodes into a struct: the exact spelling,
 * and every spelling that differs only in case. containerd's go-cni (used by containerd's CRI,
 * nerdctl and Nomad) marshals its PortMapping struct, which has no JSON tags, so the wire carries
 * "HostPort", "ContainerPort", "Protocol", "HostIP"; the CNI conventions document "hostPort",
 * "containerPort", "protocol", "hostIP". Both must work, as they do for Go plugins.
 */
const spellingsOf = (m: Record<string, unknown>, key: string): string[] =>
  Object.keys(m).filter((k) => k.toLowerCase() === key.toLowerCase());

/** The value Go would decode for `key`: the exact spelling first, else the first other. */
function goField(m: Record<string, unknown>, key: string): unknown {
  const spellings = spellingsOf(m, key);
  return m[spellings.includes(key) ? key : (spellings[0] ?? key)];
}

const GO_KEYS = ["protocol", "hostPort", "containerPort", "hostIP"] as const;

/** The first key whose spellings carry different values, with those spellings and values. */
function conflict(m: Record<string, unknown>): { spellings: string[]; values: string[] } | undefined {
  for (const key of GO_KEYS) {
    const spellings = spellingsOf(m, key);
    const values = [...new Set(spellings.map((k) => show(m[k])))];
    if (values.length > 1) return { spellings, values };
  }
  return undefined;
}

/** The mapping a refinement's error function was given (its input is untyped there). */
const mappingOf = (input: unknown): Record<string, unknown> => jsonObject.safeParse(input).data ?? {};

/** The entry with every key resolved as Go resolves it. */
const goFields = (input: unknown): Record<string, unknown> => {
  const m = mappingOf(input);
  return Object.fromEntries(GO_KEYS.map((k) => [k, goField(m, k)]));
};

const portNumber = z.int().min(1).max(65535);

const isPortAt = (key: string) => (m: Record<string, unknown>) =>
  portNumber.safeParse(goField(m, key)).success;

const notAPortAt = (key: string) => ({
  path: [key],
  ...misconfigured(
    (m, at) => `${at} must be a port number 1..65535, got ${show(goField(mappingOf(m), key))}`,
    (m) => `the mapping was ${show(m)}`,
  ),
});

const PROTOCOLS = ["tcp", "udp", "sctp"] as const;
/** go-cni and Nomad always name it; "" or absent means TCP, as in the portmap plugin. */
const protocolOf = (raw: unknown): string =>
  (raw === undefined || raw === "" ? "tcp" : String(raw)).toLowerCase();

/** One entry of the portMappings capability, its keys read as Go reads them (spellingsOf). */
const portMapping = z
  .record(
    z.string(),
    z.unknown(),
    misconfigured((v, at) => `${at} must be an object, got ${show(v)}`),
  )
  .refine(
    (m) => conflict(m) === undefined,
    misconfigured(
      (m, at) =>
        `${at} has conflicting ${(conflict(mappingOf(m))?.spellings ?? []).map((k) => `"${k}"`).join(" and ")}`,
      (m) => `values ${(conflict(mappingOf(m))?.values ?? []).join(", ")}; send one of them`,
    ),
  )
  .refine(isPortAt("hostPort"), notAPortAt("hostPort"))
  .refine(isPortAt("containerPort"), notAPortAt("containerPort"))
  .transform(goFields)
  .pipe(
    z.object({
      // Checked before lower-casing, so the message quotes what was sent.
      protocol: z
        .unknown()
        .refine(
          (p) => (PROTOCOLS as readonly string[]).includes(protocolOf(p)),
          misconfigured((v, at) => `${at} must be tcp, udp or sctp, got ${show(v)}`),
        )
        .transform(protocolOf)
        .pipe(z.enum(PROTOCOLS)),
      hostPort: portNumber,
      containerPort: portNumber,
      hostIP: z
        .string(misconfigured((v, at) => `${at} must be a string, got ${show(v)}`))
        .refine(
          (ip) => ip === "" || IpAddress.tryParse(ip) !== undefined,
          misconfigured((v, at) => `${at} "${v}" is not an IP address`),
        )
        .nullish(),
    }),
  )
  .transform(({ protocol, hostPort, containerPort, hostIP }): PortMapping => {
    const out: PortMapping = { hostPort, containerPort, protocol };
    if (hostIP) out.hostIP = hostIP;
    return out;
  });

/** "runtimeConfig.ips", "args.cni.ips": absent or null is none. */
const ipList = orDefault(
  asOne(
    z.array(z.string()),
    misconfigured((v, at) => `"${at}" must be a list of strings, got ${show(v)}`),
  ),
  [],
);

const notAnObject = misconfigured((v, at) => `"${at}" must be an object, got ${show(v)}`);

const malformed = (why: (input: unknown) => string) =>
  says(CniCode.DECODE, (input) => `prevResult is malformed: ${why(input)}`);

/** prevResult's list `key`; `field` is what nkit reads of every entry. */
function entries(key: string, field?: string) {
  const notObjects = malformed(() => `"${key}" must be a list of objects`);
  const entry = z.looseObject({}, notObjects);
  if (field === undefined) return z.array(entry, notObjects).optional();
  const incomplete = malformed((e) => `an ${key} entry has no "${field}": ${show(e)}`);
  return z
    .array(
      entry.refine((e) => typeof e[field] === "string", incomplete),
      notObjects,
    )
    .optional();
}

/** The result of ADD as the runtime cached it, checked as far as nkit reads it. */
const prevResult = z.looseObject(
  {
    ips: entries("ips", "address"),
    interfaces: entries("interfaces", "name"),
    routes: entries("routes"),
    dns: z
      .looseObject(
        {},
        malformed(() => `"dns" must be an object`),
      )
      .optional(),
  },
  malformed((v) => `expected an object, got ${show(v)}`),
);

const cniMode = z.enum(
  ["auto", "ipam", "wire"],
  misconfigured(
    (v) => `unknown mode ${show(v)}`,
    'use "auto" (the default: CRI sandboxes through NRI, other callers at ADD), "ipam" (CRI with nkitd\'s NRI plugin) or "wire" (nerdctl, Nomad: wiring at ADD)',
  ),
);

const nameMissing = misconfigured(
  () => `"name" is missing`,
  "the runtime injects the network name; check the conflist",
);
const socketNotAbsolute = misconfigured((v) => `"socket" must be an absolute path, got ${show(v)}`);

/** The network configuration's keys nkitd acts on; any other key is the runtime's or another plugin's. */
const netconf = z.object({
  cniVersion: z.string(misconfigured(() => `"cniVersion" is missing or not a string`)).pipe(
    z.enum(
      SUPPORTED_VERSIONS,
      says(
        CniCode.INCOMPATIBLE_VERSION,
        (v) => `CNI version ${v} is not supported by nkit-cni`,
        `supported versions: ${SUPPORTED_VERSIONS.join(", ")}`,
      ),
    ),
  ),
  name: z.string(nameMissing).min(1, nameMissing),
  mode: orDefault(cniMode, "auto"),
  socket: z.string(socketNotAbsolute).startsWith("/", socketNotAbsolute).optional(),
  runtimeConfig: orEmpty(
    z.object(
      {
        ips: ipList,
        portMappings: orDefault(
          z.array(
            portMapping,
            misconfigured((v, at) => `${at} must be a list, got ${show(v)}`),
          ),
          [],
        ),
      },
      notAnObject,
    ),
  ),
  args: orEmpty(
    z.object(
      {
        cni: orEmpty(
          z.object(
            {
              ips: ipList,
              labels: z
                .array(
                  asOne(
                    z.object({ key: z.string(), value: z.string() }),
                    misconfigured((v, at) => `${at} must be {key, value} strings, got ${show(v)}`),
                  ),
                  misconfigured(() => `"args.cni.labels" must be a list`),
                )
                .optional()
                .transform((list) => Object.fromEntries((list ?? []).map((l) => [l.key, l.value]))),
            },
            notAnObject,
          ),
        ),
      },
      notAnObject,
    ),
  ),
  prevResult: prevResult.nullish(),
});

const validAttachment = z.object({ containerID: z.string(), ifname: z.string() });

/** GC's list of what to keep. */
const gcConf = z.object({
  "cni.dev/valid-attachments": z.array(
    asOne(
      validAttachment,
      misconfigured((v, at) => `${at} must be {containerID, ifname}, got ${show(v)}`),
    ),
    misconfigured(
      (v) => `GC needs "cni.dev/valid-attachments" (a list of {containerID, ifname}), got ${show(v)}`,
      "without it nkit would not know what to keep",
    ),
  ),
});

const netconfObject = z.record(
  z.string(),
  z.unknown(),
  says(CniCode.DECODE, () => "the network configuration is not a JSON object", show),
);

/** Validates the network configuration (stdin) for a command. */
export function parseNetConf(raw: unknown, command: CniCommand, cniArgIps: string[] = []): NetConf {
  const received = netconfObject.safeParse(raw);
  if (!received.success) throw cniError(received.error);
  const r = netconf.safeParse(received.data);
  if (!r.success) throw cniError(r.error);
  const { cniVersion, name, mode, runtimeConfig, args, prevResult } = r.data;
  const conf: NetConf = {
    cniVersion,
    name,
    mode,
    requestedIps: pickIps([
      { name: "runtimeConfig.ips", ips: runtimeConfig.ips },
      { name: "args.cni.ips", ips: args.cni.ips },
      { name: "CNI_ARGS IP", ips: cniArgIps },
    ]),
    portMappings: runtimeConfig.portMappings,
    labels: args.cni.labels,
    raw: received.data,
  };
  // The result as the runtime cached it: the schema checked what nkit reads of it (ips, interfaces).
  if (prevResult) conf.prevResult = received.data.prevResult as CniResult;
  if (command === "GC") {
    const gc = gcConf.safeParse(received.data);
    if (!gc.success) throw cniError(gc.error);
    conf.validAttachments = gc.data["cni.dev/valid-attachments"];
  }
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

/** A request field: absent or null is "" (the shim sends absent environment variables as ""). */
const requestField = orDefault(
  z.string(says(CniCode.PROTOCOL, (v, at) => `request field "${at}" must be a string, got ${show(v)}`)),
  "",
);

const request = z.object(
  {
    v: z.literal(
      PROTOCOL_VERSION,
      says(
        CniCode.PROTOCOL,
        (v) => `nkit-cni speaks protocol version ${show(v)}, nkitd speaks ${PROTOCOL_VERSION}`,
        "install the nkit-cni binary from the same nkit release as nkitd",
      ),
    ),
    command: requestField.pipe(
      z.enum(
        COMMANDS,
        says(
          CniCode.INVALID_ENV,
          (v) => `unknown CNI_COMMAND "${v}"`,
          "nkit-cni implements ADD, DEL, CHECK, STATUS, GC, VERSION",
        ),
      ),
    ),
    containerId: requestField,
    netns: requestField,
    ifName: requestField,
    args: requestField,
    path: requestField,
    config: z.unknown().optional(),
  },
  says(CniCode.PROTOCOL, () => "the request from nkit-cni is not a JSON object"),
);

/** Parses and validates one request line from the shim. */
export function parseRequest(line: string): CniRequest {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch (e) {
    throw new CniError(CniCode.DECODE, "the request from nkit-cni is not JSON", (e as Error).message);
  }
  const r = request.safeParse(raw);
  if (!r.success) throw cniError(r.error);
  const { command: cmd, containerId, netns, ifName } = r.data;
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
  const args = parseCniArgs(r.data.args);
  return {
    command: cmd,
    containerId,
    netns,
    ifName,
    argLabels: args.labels,
    path: r.data.path,
    config: parseNetConf(r.data.config, cmd, args.ips),
  };
}
