// A service as users write it (nkitd.yaml `services:`, one file per service in paths.services, the
// API and `nkit service add`), validated into one normal form, and the load-balancer entries it
// becomes: one frontend {VIP, port, protocol} per port, each with its backend addresses. Every
// source goes through parseServiceSpec, so a service means the same wherever it was written.
import { z } from "zod";
import { InvalidArgumentError } from "../errors.js";
import { formatHostPort, IpAddress, type IpFamily } from "../util/ip.js";
import { show } from "../util/json.js";
import {
  asOne,
  type Complaint,
  complain,
  complaint,
  issuePath,
  orDefault,
  pathText,
  reportedIssue,
} from "../util/schema.js";

export type Protocol = z.output<typeof protocol>;
export type Affinity = z.output<typeof affinity>;
/** Where a service came from; each source replaces only its own services. */
export type ServiceSource = "config" | "file" | "api" | "selector" | "host-port" | "nomad";

export interface ServicePort {
  port: number;
  protocol: Protocol;
  /** The backends' port when they do not name one (default: `port`). */
  targetPort: number;
}

export interface BackendAddress {
  address: string;
  /** Absent: each service port's targetPort. */
  port?: number;
}

export interface ServiceSpec {
  name: string;
  vip: string;
  family: IpFamily;
  ports: ServicePort[];
  /** Fixed backends; empty when `selector` picks them from endpoint labels. */
  backends: BackendAddress[];
  selector?: Record<string, string>;
  affinity: Affinity;
  /** Client-ip affinity lifetime, refreshed on every use (Cilium's default: 3 h). */
  affinityTimeoutSeconds: number;
  /**
   * Reachable per packet from the uplinks (other hosts) as well as through the socket hooks: gets a
   * Maglev table and conntrack at tc. Host ports on the host's own addresses always are; a VIP is
   * when its service says `external: true` (its table costs 64 KiB of kernel memory per port).
   */
  external?: boolean;
}

/** One load-balancer frontend and where it sends connections. */
export interface LbEntry {
  service: string;
  vip: string;
  port: number;
  protocol: Protocol;
  backends: { address: string; port: number }[];
  affinity: Affinity;
  affinityTimeoutSeconds: number;
  external?: boolean;
}

export const DEFAULT_AFFINITY_TIMEOUT_SECONDS = 3 * 3600;
const NAME_RE = /^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$/;

/** A bad field of a service definition: `key` is its path (`services[2].ports[0].port`). */
export class ServiceSpecError extends InvalidArgumentError {
  constructor(
    readonly key: string,
    readonly problem: string,
    readonly fix: string,
  ) {
    super(`${key}: ${problem}; ${fix}`);
  }
}

/** The ServiceSpecError of a failed parse; `key` names where the definition came from. */
function specError(error: z.ZodError, key: string): ServiceSpecError {
  const issue = reportedIssue(error);
  const { problem, fix } = complaint.heard(issue);
  return new ServiceSpecError(pathText(issuePath(issue), key), problem, fix);
}

/** A mapping with exactly the keys of `shape`; `what` says what else was expected, `example` shows it. */
function mapping<S extends z.ZodRawShape>(shape: S, what: string, example: string) {
  const known = Object.keys(shape).join(", ");
  return z.strictObject(shape, {
    error: (iss) =>
      complaint.text(
        iss.code === "unrecognized_keys"
          ? { problem: "unknown key", fix: `remove it; known keys: ${known}` }
          : { problem: `expected ${what}, got ${show(iss.input)}`, fix: example },
      ),
  });
}

const notAPort = (v: unknown): Complaint => ({ problem: `${show(v)} is not a port`, fix: "use 1..65535" });
const notAPortParam = complaint.says(notAPort);
const portNumber = z.int(notAPortParam).min(1, notAPortParam).max(65535, notAPortParam);

const ipFamily = (text: string): IpFamily | undefined => {
  return IpAddress.tryParse(text)?.family;
};
const notAnIp = (v: unknown): Complaint => ({
  problem: `${show(v)} is not an IP address`,
  fix: "e.g. 10.96.0.10 or fd96::10",
});

/** "10.0.0.5", "10.0.0.5:8080", "fd00::5", "[fd00::5]:8080"; `text` stays for messages about it. */
const backendAddress = z
  .string(
    complain((v) => `expected "ADDR:PORT", got ${show(v)}`, 'e.g. "10.47.0.5:8080" or "[fd47::5]:8080"'),
  )
  .transform((text, ctx) => {
    const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(text) ?? /^([0-9.]+):(\d+)$/.exec(text);
    const address = m ? (m[1] ?? "") : text;
    const family = ipFamily(address);
    const port = m?.[2] === undefined ? undefined : Number(m[2]);
    const refuse = (parts: Complaint): never => {
      ctx.issues.push({ code: "custom", input: text, message: complaint.text(parts) });
      return z.NEVER;
    };
    if (family === undefined) return refuse(notAnIp(address));
    if (port !== undefined && !portNumber.safeParse(port).success) return refuse(notAPort(port));
    return port === undefined ? { text, address, family } : { text, address, port, family };
  });

/** "10.0.0.5", "10.0.0.5:8080", "fd00::5", "[fd00::5]:8080". */
export function parseBackend(text: string, key: string): BackendAddress & { family: IpFamily } {
  const r = backendAddress.safeParse(text);
  if (!r.success) throw specError(r.error, key);
  const { text: _text, ...backend } = r.data;
  return backend;
}

const protocol = z.enum(
  ["tcp", "udp"],
  complain((v) => `${show(v)} is not supported`, "use tcp or udp"),
);
const affinity = z.enum(
  ["none", "client-ip"],
  complain((v) => `${show(v)} is not an affinity`, "use none or client-ip"),
);

const servicePort = mapping(
  {
    port: portNumber,
    protocol: orDefault(protocol, "tcp"),
    targetPort: portNumber.optional(),
  },
  "{port, protocol, targetPort}",
  "e.g. {port: 80, protocol: tcp}",
).transform((p): ServicePort => ({ port: p.port, protocol: p.protocol, targetPort: p.targetPort ?? p.port }));

const notAName = complain(
  (v) => `${show(v)} is not a service name`,
  "use 1-64 of a-z 0-9 . _ - (starting and ending alphanumeric)",
);
const notAPortList = complain(
  (v) => `expected a non-empty list, got ${show(v)}`,
  "e.g. [{port: 80, protocol: tcp, targetPort: 8080}]",
);
const notATimeout = complain((v) => `${show(v)} is not a timeout`, "use 1..604800 seconds");

/**
 * A service definition as users write it (YAML, the API): `ports` as a list, backends as
 * "ADDR[:PORT]", parsed into the normal form. The checks that relate fields run in the transform,
 * which zod reaches only when every field is valid.
 */
export const serviceInput = mapping(
  {
    name: z.string(notAName).regex(NAME_RE, notAName),
    vip: z
      .string(complain((v) => `expected an IP address, got ${show(v)}`, "e.g. 10.96.0.10"))
      .refine((v) => ipFamily(v) !== undefined, complaint.says(notAnIp)),
    ports: z.array(servicePort, notAPortList).min(1, notAPortList),
    backends: z
      .array(
        backendAddress,
        complain((v) => `expected a list, got ${show(v)}`, 'e.g. ["10.47.0.5:8080"]'),
      )
      .optional(),
    selector: asOne(
      z.record(z.string(), z.string()).refine((r) => Object.keys(r).length > 0),
      complain((v) => `expected label: value pairs, got ${show(v)}`, "e.g. {app: web}"),
    ).optional(),
    affinity: orDefault(affinity, "none"),
    affinityTimeoutSeconds: orDefault(
      z
        .int(notATimeout)
        .min(1, notATimeout)
        .max(86400 * 7, notATimeout),
      DEFAULT_AFFINITY_TIMEOUT_SECONDS,
    ),
    external: z
      .boolean(
        complain(
          (v) => `${show(v)} is not true or false`,
          "true: reachable per packet from other hosts (uplink ingress)",
        ),
      )
      .optional(),
  },
  "a mapping",
  "write name, vip, ports and backends",
).transform((raw, ctx): ServiceSpec => {
  const refuse = (path: PropertyKey[], problem: string, fix: string): never => {
    ctx.issues.push({ code: "custom", input: raw, path, message: complaint.text({ problem, fix }) });
    return z.NEVER;
  };
  const family = IpAddress.parse(raw.vip).family;
  const frontends = new Set<string>();
  for (const [i, p] of raw.ports.entries()) {
    const id = `${p.port}/${p.protocol}`;
    if (frontends.has(id))
      return refuse(["ports", i], `${id} is listed twice`, "list each port/protocol once");
    frontends.add(id);
  }
  if (raw.backends !== undefined && raw.selector !== undefined) {
    return refuse([], "has both backends and selector", "give one: fixed backends or a label selector");
  }
  const backends: BackendAddress[] = [];
  const seen = new Set<string>();
  for (const [i, b] of (raw.backends ?? []).entries()) {
    if (b.family !== family) {
      return refuse(
        ["backends", i],
        `${b.text} is IPv${b.family} but the VIP ${raw.vip} is IPv${family}`,
        "give backends of the VIP's family (one service per family)",
      );
    }
    if (b.port !== undefined && raw.ports.length > 1) {
      return refuse(
        ["backends", i],
        `names port ${b.port} but the service has ${raw.ports.length} ports`,
        "give bare addresses; each port's targetPort picks the backend port",
      );
    }
    const id = `${IpAddress.parse(b.address).text}:${b.port ?? ""}`;
    if (seen.has(id)) return refuse(["backends", i], `${b.text} is listed twice`, "list each backend once");
    seen.add(id);
    backends.push(b.port === undefined ? { address: b.address } : { address: b.address, port: b.port });
  }
  const spec: ServiceSpec = {
    name: raw.name,
    vip: raw.vip,
    family,
    ports: raw.ports,
    backends,
    affinity: raw.affinity,
    affinityTimeoutSeconds: raw.affinityTimeoutSeconds,
  };
  if (raw.selector) spec.selector = raw.selector;
  if (raw.external) spec.external = true;
  return spec;
});

/**
 * Validates one service definition; `key` prefixes every error (`services[0]`, a file name).
 * Accepts what the YAML forms and the API carry: `ports` as a list, backends as "ADDR[:PORT]".
 */
export function parseServiceSpec(raw: unknown, key: string): ServiceSpec {
  const r = serviceInput.safeParse(raw);
  if (!r.success) throw specError(r.error, key);
  return r.data;
}

/**
 * The frontends of a service with their backends. `selected` are the addresses a selector picked
 * (ignored for fixed backends); only those of the VIP's family are used.
 */
export function lbEntries(spec: ServiceSpec, selected: readonly string[] = []): LbEntry[] {
  const pool: BackendAddress[] = spec.selector
    ? selected.filter((a) => IpAddress.parse(a).family === spec.family).map((address) => ({ address }))
    : spec.backends;
  return spec.ports.map((p) => ({
    service: spec.name,
    vip: spec.vip,
    port: p.port,
    protocol: p.protocol,
    backends: pool.map((b) => ({ address: b.address, port: b.port ?? p.targetPort })),
    affinity: spec.affinity,
    affinityTimeoutSeconds: spec.affinityTimeoutSeconds,
    ...(spec.external ? { external: true } : {}),
  }));
}

/** The one text form of a frontend, for conflict messages and keys in TS. */
export function frontendId(e: Pick<LbEntry, "vip" | "port" | "protocol">): string {
  // join() makes one flat string: 20,000 of these are map keys at 10,000 services.
  return [formatHostPort(IpAddress.parse(e.vip).text, e.port), "/", e.protocol].join("");
}

const FRONTEND_ID = /^\[?([^[\]]+)\]?:(\d+)\/(tcp|udp)$/;

/** The frontend a frontendId names. */
export function frontendOf(id: string): Pick<LbEntry, "vip" | "port" | "protocol"> {
  const m = FRONTEND_ID.exec(id);
  if (!m?.[1] || !m[2])
    throw new InvalidArgumentError(`${show(id)} is not a frontend id (ADDR:PORT/PROTOCOL)`);
  return { vip: m[1], port: Number(m[2]), protocol: m[3] === "udp" ? "udp" : "tcp" };
}

/**
 * What the datapath holds for a frontend, as one string: equal for two entries exactly when they
 * program the maps alike (the service's name is not in the maps). JSON.stringify makes one flat
 * string, where a template literal would keep every piece it was joined from.
 */
export function programmedAs(e: LbEntry): string {
  return JSON.stringify([
    e.backends.map((b) => [b.address, b.port]),
    e.affinity,
    e.affinityTimeoutSeconds,
    e.external === true,
  ]);
}

/**
 * A service as the manager keeps it (10,000 at once are usual): exactly the spec's fields, arrays
 * as long as they hold, the enumerations' own literals instead of copies of them, frozen all the way
 * down so the state store can share it.
 */
export function keptSpec(s: ServiceSpec): ServiceSpec {
  const spec: ServiceSpec = {
    name: s.name,
    vip: s.vip,
    family: s.family === 6 ? 6 : 4,
    ports: s.ports.map((p) => ({
      port: p.port,
      protocol: p.protocol === "udp" ? "udp" : "tcp",
      targetPort: p.targetPort,
    })),
    backends: s.backends.map((b) =>
      b.port === undefined ? { address: b.address } : { address: b.address, port: b.port },
    ),
    affinity: s.affinity === "client-ip" ? "client-ip" : "none",
    affinityTimeoutSeconds: s.affinityTimeoutSeconds,
  };
  if (s.selector) spec.selector = { ...s.selector };
  if (s.external) spec.external = true;
  return spec;
}
