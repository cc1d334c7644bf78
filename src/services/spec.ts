// A service as users write it (nkitd.yaml `services:`, one file per service in paths.services, the
// API and `nkit service add`), validated into one normal form, and the load-balancer entries it
// becomes: one frontend {VIP, port, protocol} per port, each with its backend addresses. Every
// source goes through parseServiceSpec, so a service means the same wherever it was written.
import { InvalidArgumentError } from "../errors.js";
import { formatHostPort, IpAddress, type IpFamily } from "../util/ip.js";
import { isObj, type JsonObject, show } from "../util/json.js";

export type Protocol = "tcp" | "udp";
export type Affinity = "none" | "client-ip";
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

function port(v: unknown, key: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > 65535) {
    throw new ServiceSpecError(key, `${show(v)} is not a port`, "use 1..65535");
  }
  return v;
}

function family(address: string, key: string): IpFamily {
  try {
    return IpAddress.parse(address).family;
  } catch {
    throw new ServiceSpecError(key, `${show(address)} is not an IP address`, "e.g. 10.96.0.10 or fd96::10");
  }
}

/** "10.0.0.5", "10.0.0.5:8080", "fd00::5", "[fd00::5]:8080". */
export function parseBackend(text: string, key: string): BackendAddress & { family: IpFamily } {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  const v4WithPort = /^([0-9.]+):(\d+)$/.exec(text);
  const m = bracketed ?? v4WithPort;
  const address = m ? (m[1] ?? "") : text;
  const fam = family(address, key);
  if (m?.[2] === undefined) return { address, family: fam };
  return { address, port: port(Number(m[2]), key), family: fam };
}

function keysOf(o: JsonObject, key: string, known: readonly string[]): void {
  for (const k of Object.keys(o)) {
    if (!known.includes(k)) {
      throw new ServiceSpecError(`${key}.${k}`, "unknown key", `remove it; known keys: ${known.join(", ")}`);
    }
  }
}

function parsePort(raw: unknown, key: string): ServicePort {
  if (!isObj(raw))
    throw new ServiceSpecError(
      key,
      `expected {port, protocol, targetPort}, got ${show(raw)}`,
      "e.g. {port: 80, protocol: tcp}",
    );
  keysOf(raw, key, ["port", "protocol", "targetPort"]);
  const p = port(raw.port, `${key}.port`);
  const protocol = raw.protocol ?? "tcp";
  if (protocol !== "tcp" && protocol !== "udp") {
    throw new ServiceSpecError(`${key}.protocol`, `${show(protocol)} is not supported`, "use tcp or udp");
  }
  const targetPort = raw.targetPort === undefined ? p : port(raw.targetPort, `${key}.targetPort`);
  return { port: p, protocol, targetPort };
}

/**
 * Validates one service definition; `key` prefixes every error (`services[0]`, a file name).
 * Accepts what the YAML forms and the API carry: `ports` as a list, backends as "ADDR[:PORT]".
 */
export function parseServiceSpec(raw: unknown, key: string): ServiceSpec {
  if (!isObj(raw))
    throw new ServiceSpecError(
      key,
      `expected a mapping, got ${show(raw)}`,
      "write name, vip, ports and backends",
    );
  keysOf(raw, key, [
    "name",
    "vip",
    "ports",
    "backends",
    "selector",
    "affinity",
    "affinityTimeoutSeconds",
    "external",
  ]);
  const name = raw.name;
  if (typeof name !== "string" || !NAME_RE.test(name)) {
    throw new ServiceSpecError(
      `${key}.name`,
      `${show(name)} is not a service name`,
      "use 1-64 of a-z 0-9 . _ - (starting and ending alphanumeric)",
    );
  }
  if (typeof raw.vip !== "string")
    throw new ServiceSpecError(
      `${key}.vip`,
      `expected an IP address, got ${show(raw.vip)}`,
      "e.g. 10.96.0.10",
    );
  const vipFamily = family(raw.vip, `${key}.vip`);
  const vip = raw.vip;

  if (!Array.isArray(raw.ports) || raw.ports.length === 0) {
    throw new ServiceSpecError(
      `${key}.ports`,
      `expected a non-empty list, got ${show(raw.ports)}`,
      "e.g. [{port: 80, protocol: tcp, targetPort: 8080}]",
    );
  }
  const ports = raw.ports.map((p, i) => parsePort(p, `${key}.ports[${i}]`));
  const frontends = new Set<string>();
  ports.forEach((p, i) => {
    const id = `${p.port}/${p.protocol}`;
    if (frontends.has(id))
      throw new ServiceSpecError(
        `${key}.ports[${i}]`,
        `${id} is listed twice`,
        "list each port/protocol once",
      );
    frontends.add(id);
  });

  if (raw.backends !== undefined && raw.selector !== undefined) {
    throw new ServiceSpecError(
      key,
      "has both backends and selector",
      "give one: fixed backends or a label selector",
    );
  }
  const backends: BackendAddress[] = [];
  if (raw.backends !== undefined) {
    if (!Array.isArray(raw.backends))
      throw new ServiceSpecError(
        `${key}.backends`,
        `expected a list, got ${show(raw.backends)}`,
        'e.g. ["10.47.0.5:8080"]',
      );
    const seen = new Set<string>();
    raw.backends.forEach((b, i) => {
      const bkey = `${key}.backends[${i}]`;
      if (typeof b !== "string")
        throw new ServiceSpecError(
          bkey,
          `expected "ADDR:PORT", got ${show(b)}`,
          'e.g. "10.47.0.5:8080" or "[fd47::5]:8080"',
        );
      const parsed = parseBackend(b, bkey);
      if (parsed.family !== vipFamily) {
        throw new ServiceSpecError(
          bkey,
          `${b} is IPv${parsed.family} but the VIP ${vip} is IPv${vipFamily}`,
          "give backends of the VIP's family (one service per family)",
        );
      }
      if (parsed.port !== undefined && ports.length > 1) {
        throw new ServiceSpecError(
          bkey,
          `names port ${parsed.port} but the service has ${ports.length} ports`,
          "give bare addresses; each port's targetPort picks the backend port",
        );
      }
      const id = `${IpAddress.parse(parsed.address).text}:${parsed.port ?? ""}`;
      if (seen.has(id)) throw new ServiceSpecError(bkey, `${b} is listed twice`, "list each backend once");
      seen.add(id);
      const be: BackendAddress = { address: parsed.address };
      if (parsed.port !== undefined) be.port = parsed.port;
      backends.push(be);
    });
  }
  let selector: Record<string, string> | undefined;
  if (raw.selector !== undefined) {
    if (
      !isObj(raw.selector) ||
      Object.keys(raw.selector).length === 0 ||
      !Object.values(raw.selector).every((v) => typeof v === "string")
    ) {
      throw new ServiceSpecError(
        `${key}.selector`,
        `expected label: value pairs, got ${show(raw.selector)}`,
        "e.g. {app: web}",
      );
    }
    selector = raw.selector as Record<string, string>;
  }

  const affinity = raw.affinity ?? "none";
  if (affinity !== "none" && affinity !== "client-ip") {
    throw new ServiceSpecError(
      `${key}.affinity`,
      `${show(affinity)} is not an affinity`,
      "use none or client-ip",
    );
  }
  const timeout = raw.affinityTimeoutSeconds ?? DEFAULT_AFFINITY_TIMEOUT_SECONDS;
  if (typeof timeout !== "number" || !Number.isInteger(timeout) || timeout < 1 || timeout > 86400 * 7) {
    throw new ServiceSpecError(
      `${key}.affinityTimeoutSeconds`,
      `${show(timeout)} is not a timeout`,
      "use 1..604800 seconds",
    );
  }
  const spec: ServiceSpec = {
    name,
    vip,
    family: vipFamily,
    ports,
    backends,
    affinity,
    affinityTimeoutSeconds: timeout,
  };
  if (selector) spec.selector = selector;
  if (raw.external !== undefined) {
    if (typeof raw.external !== "boolean") {
      throw new ServiceSpecError(
        `${key}.external`,
        `${show(raw.external)} is not true or false`,
        "true: reachable per packet from other hosts (uplink ingress)",
      );
    }
    if (raw.external) spec.external = true;
  }
  return spec;
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
  return `${formatHostPort(IpAddress.parse(e.vip).text, e.port)}/${e.protocol}`;
}
