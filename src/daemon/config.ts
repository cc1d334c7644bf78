// nkitd configuration: the YAML keys README.md ("Running nkitd") lists, a user contract. Every key is
// optional; a missing file means built-in defaults. Errors name the key, the bad value and the fix.
import { readFileSync } from "node:fs";
import { isAbsolute } from "node:path";
import { parse } from "yaml";
import { z } from "zod";
import { ConfigError } from "../errors.js";
import { frontendId, lbEntries, serviceInput } from "../services/spec.js";
import { IpAddress, IpPrefix } from "../util/ip.js";
import { show } from "../util/json.js";
import {
  asOne,
  complain,
  complaint,
  issuePath,
  orDefault,
  orEmpty,
  pathText,
  reportedIssue,
} from "../util/schema.js";

/** Maglev table sizes nkit accepts: the usual primes (Maglev's M must be prime, ≫ backends). */
const MAGLEV_PRIMES = [251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071] as const;

export const DEFAULT_CONFIG_PATH = "/etc/nkit/nkitd.yaml";

/**
 * A mapping with exactly the keys of `shape`; absent or null is an empty one (every key defaulted).
 * `notAMapping` is the fix for a value that is no mapping at all, given where it is.
 */
function mapping<S extends z.ZodRawShape>(shape: S, notAMapping: (at: string) => string) {
  const known = Object.keys(shape).join(", ");
  const object = z.strictObject(shape, {
    error: (iss) =>
      complaint.text(
        iss.code === "unrecognized_keys"
          ? { problem: "unknown key", fix: `remove it; known keys here: ${known}` }
          : { problem: `expected a mapping, got ${show(iss.input)}`, fix: notAMapping(pathText(iss.path)) },
      ),
  });
  return orEmpty(object);
}

const section = <S extends z.ZodRawShape>(shape: S) => mapping(shape, (at) => `write it as "${at}: {...}"`);

const string = z.string(complain((v) => `expected a string, got ${show(v)}`, "quote the value"));

const notAbsolute = complain((v) => `"${v}" is not an absolute path`, "give a path starting with /");
const absolutePath = string.refine(isAbsolute, notAbsolute);

const flag = z.boolean(complain((v) => `expected true or false, got ${show(v)}`, "use true or false"));

/** A whole number of `unit` in min..max. */
function whole(min: number, max: number, unit: string) {
  const c = complain((v) => `${show(v)} is not a count of ${unit}`, `use a whole number ${min}..${max}`);
  return z.int(c).min(min, c).max(max, c);
}

/** IpPrefix.parse's complaint about `text`, or undefined when it is a CIDR. */
function cidrProblem(text: unknown): string | undefined {
  try {
    IpPrefix.parse(String(text));
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

const cidr = z.string(complain((v) => `expected a string, got ${show(v)}`, "quote IPv6 CIDRs")).refine(
  (c) => cidrProblem(c) === undefined,
  complain((v) => cidrProblem(v) ?? "", "give an address/prefix-length"),
);

/**
 * At most one CIDR per family (podCIDRs, serviceCIDRs, the cluster CIDRs); absent (not null) is
 * `fallback`. `min` 0 lets the list be empty (a feature that is off).
 */
function cidrPair(fallback: string[], example: string, min = 1) {
  const notAList = complain(
    (v) => `expected a list of ${min === 0 ? "at most two" : "one or two"} CIDRs, got ${show(v)}`,
    example,
  );
  // A transform, not a refinement: zod reaches it only when every entry is a CIDR.
  const pair = z.array(cidr).transform((list, ctx) => {
    const seen = new Set<number>();
    for (const [i, c] of list.entries()) {
      const family = IpPrefix.parse(c).family;
      if (seen.has(family)) {
        const parts = {
          problem: `a second IPv${family} CIDR (${c})`,
          fix: "give at most one CIDR per family",
        };
        ctx.issues.push({ code: "custom", path: [i], input: c, message: complaint.text(parts) });
        return z.NEVER;
      }
      seen.add(family);
    }
    return list;
  });
  // The length is checked before the entries, so a list of three reads as "too long".
  return z
    .array(z.unknown(), notAList)
    .min(min, notAList)
    .max(2, notAList)
    .pipe(pair)
    .default(() => [...fallback]);
}

const ipAddress = string.refine(
  (v) => IpAddress.tryParse(v) !== undefined,
  complain((v) => `"${v}" is not an IP address`, 'e.g. 192.0.2.2 or "2001:db8::2"'),
);

export const NODE_NAME = /^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$/;

/** A static peer: another nkit host whose pod CIDRs are routed to its address(es), never masqueraded. */
const peer = mapping(
  {
    name: string.regex(
      NODE_NAME,
      complain((v) => `"${v}" is not a node name`, "use lowercase letters, digits, '.' and '-'"),
    ),
    /** One address, or one per family: the next hop of the peer's pod CIDRs of that family. */
    address: z
      .union(
        [ipAddress, z.array(ipAddress).min(1).max(2)],
        complain(
          () => "expected an IP address or a list of one per family",
          'e.g. address: 192.0.2.2, or address: [192.0.2.2, "2001:db8::2"]',
        ),
      )
      .transform((a) => (Array.isArray(a) ? a : [a])),
    podCIDRs: cidrPair([], 'e.g. [10.48.1.0/24, "fd48:0:0:1::/64"]'),
  },
  (at) => `write each peer as "- {name: ..., address: ..., podCIDRs: [...]}" (${at})`,
);

const PORT_RANGE = /^(\d{1,5})-(\d{1,5})$/;
const notAPortRange = complain(
  (v) => `${show(v)} is not a port range`,
  'use "LOW-HIGH" within 1024-65535, e.g. "32768-65535"',
);
const bounds = (range: string): [number, number] => {
  const [lo = 0, hi = 0] = range.split("-").map(Number);
  return [lo, hi];
};

const notAnMtu = complain((v) => `${show(v)} is not a usable MTU`, "use 0 (follow the uplink) or 576..65535");

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

/** nkitd.yaml, and the one place its defaults are written (defaultConfig() is the parse of nothing). */
const nkitdConfig = mapping(
  {
    datapath: orDefault(
      z.enum(
        ["auto", "netkit", "veth"],
        complain((v) => `${show(v)} is not a datapath mode`, "use auto, netkit or veth"),
      ),
      "auto",
    ),
    podCIDRs: cidrPair(["10.47.0.0/24", "fd47::/64"], 'e.g. [10.47.0.0/24, "fd47::/64"]'),
    uplinks: orDefault(
      asOne(
        z.array(z.string().regex(/^[^\s/]{1,15}$/)),
        complain((v) => `expected a list of interface names, got ${show(v)}`, "e.g. [eth0]"),
      ),
      [],
    ),
    /** 0: follow the uplink. */
    mtu: orDefault(
      z.int(notAnMtu).refine((mtu) => mtu === 0 || (mtu >= 576 && mtu <= 65535), notAnMtu),
      0,
    ),
    bigTcp: orDefault(flag, true),
    /** veth: RPS on each pod's host end, so a pod's TCP segments are not reordered (see docs). */
    flowSteering: orDefault(flag, true),
    paths: section({
      state: orDefault(absolutePath, "/var/lib/nkit"),
      run: orDefault(absolutePath, "/run/nkit"),
      bpffs: orDefault(absolutePath, "/sys/fs/bpf/nkit"),
      /** Watched directory of service files (one YAML service per file). */
      services: orDefault(absolutePath, "/etc/nkit/services.d"),
      /** cgroup v2 directory the socket load-balancer attaches to; "" = the host's cgroup2 mount. */
      cgroup: orDefault(
        string.refine((p) => p === "" || isAbsolute(p), notAbsolute),
        "",
      ),
    }),
    /** Where services without a VIP of their own get one (Nomad). */
    serviceCIDRs: cidrPair(["10.96.0.0/16", "fd96::/112"], 'e.g. [10.96.0.0/16, "fd96::/112"]'),
    services: orDefault(
      z.array(
        serviceInput,
        complain((v) => `expected a list, got ${show(v)}`, "write one `- name: ...` entry per service"),
      ),
      [],
    ),
    masquerade: section({
      /** Masquerade IPv4 pod traffic leaving through an uplink. */
      enabled: orDefault(flag, true),
      /** IPv6 too (the pods' host devices forward IPv6, which is all bpf_fib_lookup asks for). */
      ipv6: orDefault(flag, false),
      /** Destinations that keep the pod's address, besides the pod and service CIDRs. */
      nonMasqueradeCIDRs: orDefault(
        z.array(
          cidr,
          complain((v) => `expected a list of CIDRs, got ${show(v)}`, 'e.g. [192.168.0.0/16, "fd00::/8"]'),
        ),
        [],
      ),
      /** Source ports masqueraded flows get, inclusive. */
      portRange: orDefault(
        z
          .string(notAPortRange)
          .regex(PORT_RANGE, notAPortRange)
          .refine((r) => {
            const [lo, hi] = bounds(r);
            return lo >= 1024 && hi <= 65535 && lo <= hi;
          }, notAPortRange)
          .transform(bounds),
        [32768, 65535],
      ),
    }),
    /** Capacities of the shared BPF maps and the Maglev table size; a change applies at the next start. */
    limits: section({
      /** Frontends (VIP:port/protocol, host ports included): nk_lb_services. */
      services: orDefault(whole(16, 1 << 22, "frontends"), 65536),
      /** Backend slots over all frontends: nk_lb_backends (and its per-backend counters). */
      backends: orDefault(whole(16, 1 << 24, "backend slots"), 262144),
      /** Translated flows, two entries each (load-balanced per packet and masqueraded): nk_lb_ct. */
      conntrack: orDefault(whole(1024, 1 << 26, "entries"), 262144),
      /** Frontends load-balanced per packet (host ports, external VIPs), one Maglev table each: nk_lb_maglev. */
      externalFrontends: orDefault(whole(16, 1 << 20, "frontends"), 8192),
      /** Entries of each Maglev table (4 bytes each): a prime of MAGLEV_PRIMES. */
      maglevTableSize: orDefault(
        whole(1, 1 << 20, "entries").refine(
          (m) => (MAGLEV_PRIMES as readonly number[]).includes(m),
          complain(
            (v) => `${v} is not one of the Maglev primes`,
            `use one of ${MAGLEV_PRIMES.join(", ")} (about 100 times the backends of a frontend)`,
          ),
        ),
        16381,
      ),
    }),
    /** Seconds a translated flow (load-balanced or masqueraded) may stay idle, by state. */
    timeouts: section({
      tcpEstablished: orDefault(whole(1, 7 * 86400, "seconds"), 21600),
      tcpOpening: orDefault(whole(1, 7 * 86400, "seconds"), 60),
      tcpClosing: orDefault(whole(1, 7 * 86400, "seconds"), 10),
      /** UDP and ICMP flows. */
      udp: orDefault(whole(1, 7 * 86400, "seconds"), 300),
    }),
    nri: section({
      enabled: orDefault(flag, true),
      socket: orDefault(absolutePath, "/var/run/nri/nri.sock"),
      // YAML reads `index: 10` as a number; the plugin index is the text NRI sorts plugins by.
      index: orDefault(
        z.preprocess(
          (v) => (typeof v === "number" ? String(v) : v),
          string.regex(
            /^\d{2}$/,
            complain((v) => `"${v}" is not a two-digit index`, 'use e.g. "10"'),
          ),
        ),
        "10",
      ),
    }),
    /** containerd's API socket: names and labels of the containers nkit-cni wires (nerdctl). */
    containerd: section({
      socket: orDefault(absolutePath, "/run/containerd/containerd.sock"),
    }),
    /** Static multi-host: other nkit hosts' pod CIDRs, routed to them directly. */
    peers: orDefault(
      z.array(
        peer,
        complain(
          (v) => `expected a list, got ${show(v)}`,
          "write one `- {name: ..., address: ..., podCIDRs: [...]}` per peer",
        ),
      ),
      [],
    ),
    /** Nomad's HTTP API: the identity (namespace, job, group, tasks) of allocations; "" address = off. */
    nomad: section({
      address: orDefault(string, ""),
      token: orDefault(string, ""),
      tokenFile: orDefault(z.union([z.literal(""), absolutePath]), ""),
      namespace: orDefault(string, "*"),
      /**
       * Multi-host pod routing through Nomad: this node claims its pod CIDRs out of `cidrs` in a
       * Nomad Variable and routes to every other node's; no cidrs = off (podCIDRs as configured).
       */
      cluster: section({
        cidrs: cidrPair([], 'e.g. [10.48.0.0/16, "fd48::/56"]', 0),
        /** The prefix length of one node's pod CIDR, per family. */
        nodeMask: section({
          ipv4: orDefault(whole(8, 30, "bits"), 24),
          ipv6: orDefault(whole(48, 120, "bits"), 64),
        }),
        /** "" = the host name. */
        nodeName: orDefault(
          z.union([
            z.literal(""),
            string.regex(
              NODE_NAME,
              complain((v) => `"${v}" is not a node name`, "use lowercase letters, digits, '.' and '-'"),
            ),
          ]),
          "",
        ),
        /** Where other nodes send this node's pod traffic; [] = the uplinks' first global address per family. */
        address: orDefault(
          z.array(
            ipAddress,
            complain(
              (v) => `expected a list of IP addresses, got ${show(v)}`,
              'e.g. [192.0.2.2, "2001:db8::2"]',
            ),
          ),
          [],
        ),
        variable: orDefault(
          string.regex(
            /^[a-zA-Z0-9_/.-]{1,128}$/,
            complain((v) => `"${v}" is not a Nomad Variable path`, "e.g. nkit/cluster"),
          ),
          "nkit/cluster",
        ),
        /** Seconds without a heartbeat after which another node frees a node's claim; 0 = never (nkit node forget). */
        ttl: orDefault(whole(0, 365 * 86400, "seconds"), 0),
      }),
    }),
    log: section({
      level: orDefault(
        string.pipe(
          z.enum(
            LOG_LEVELS,
            complain((v) => `"${v}" is not a log level`, `use one of ${LOG_LEVELS.join(", ")}`),
          ),
        ),
        "info",
      ),
    }),
    metrics: section({
      listen: orDefault(
        string.refine(
          (l) => l === "" || /^(\[[0-9a-fA-F:]+\]|[0-9.]+|localhost):\d{1,5}$/.test(l),
          complain((v) => `"${v}" is not host:port`, 'use e.g. "127.0.0.1:9965", or "" to disable'),
        ),
        "",
      ),
    }),
  },
  () => "write key: value lines",
);

export type NkitdConfig = z.output<typeof nkitdConfig>;

export function defaultConfig(): NkitdConfig {
  return nkitdConfig.parse({});
}

/** What relates keys to each other: VIP ranges and static services clear of the pod CIDRs, one owner per frontend. */
function checkRelations(c: NkitdConfig): void {
  for (const [i, svc] of c.serviceCIDRs.entries()) {
    const pod = c.podCIDRs.find((p) => IpPrefix.parse(p).overlaps(IpPrefix.parse(svc)));
    if (pod) {
      throw new ConfigError(
        `serviceCIDRs[${i}]`,
        `${svc} overlaps the pod CIDR ${pod}`,
        "give VIPs a range of their own",
      );
    }
  }
  const own = c.podCIDRs.map((p) => IpPrefix.parse(p));
  const peerNames = new Set<string>();
  const peerCIDRs: { cidr: IpPrefix; name: string }[] = [];
  for (const [i, p] of c.peers.entries()) {
    if (peerNames.has(p.name)) {
      throw new ConfigError(`peers[${i}].name`, `${p.name} is used twice`, "give each peer its own name");
    }
    peerNames.add(p.name);
    if (p.podCIDRs.length === 0) {
      throw new ConfigError(`peers[${i}].podCIDRs`, "is empty", "give the peer's pod CIDRs, one per family");
    }
    const families = p.address.map((a) => IpAddress.parse(a).family);
    if (new Set(families).size !== families.length) {
      throw new ConfigError(
        `peers[${i}].address`,
        "has two addresses of one family",
        "give at most one per family",
      );
    }
    for (const text of p.podCIDRs) {
      const cidr = IpPrefix.parse(text);
      if (!families.includes(cidr.family)) {
        throw new ConfigError(
          `peers[${i}].address`,
          `has no IPv${cidr.family} address for the pod CIDR ${text}`,
          `add the peer's IPv${cidr.family} address: address: [..., ...]`,
        );
      }
      const clash = own.find((o) => o.overlaps(cidr));
      if (clash) {
        throw new ConfigError(
          `peers[${i}].podCIDRs`,
          `${text} overlaps this host's pod CIDR ${clash}`,
          "give each host its own pod CIDRs",
        );
      }
      const other = peerCIDRs.find((o) => o.cidr.overlaps(cidr));
      if (other) {
        throw new ConfigError(
          `peers[${i}].podCIDRs`,
          `${text} overlaps the pod CIDR of peer ${other.name}`,
          "give each host its own pod CIDRs",
        );
      }
      peerCIDRs.push({ cidr, name: p.name });
    }
  }
  checkCluster(c, peerCIDRs);
  const names = new Set<string>();
  const frontends = new Map<string, string>();
  for (const [i, spec] of c.services.entries()) {
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
    // A VIP inside a pod CIDR would shadow a pod.
    const vip = IpAddress.parse(spec.vip);
    const pod = c.podCIDRs.map((p) => IpPrefix.parse(p)).find((p) => p.contains(vip));
    if (pod) {
      throw new ConfigError(
        `services[${i}].vip`,
        `${spec.vip} lies in the pod CIDR ${pod.text}`,
        "take VIPs from serviceCIDRs",
      );
    }
  }
}

/** nomad.cluster: needs Nomad, one CIDR per family clear of the VIPs and the static peers, masks that fit. */
function checkCluster(c: NkitdConfig, peerCIDRs: readonly { cidr: IpPrefix; name: string }[]): void {
  const cl = c.nomad.cluster;
  if (cl.cidrs.length === 0) return;
  if (!c.nomad.address) {
    throw new ConfigError(
      "nomad.cluster.cidrs",
      "is set but nomad.address is empty",
      "give nomad.address (the local Nomad agent, e.g. http://127.0.0.1:4646)",
    );
  }
  for (const [i, text] of cl.cidrs.entries()) {
    const at = `nomad.cluster.cidrs[${i}]`;
    const cidr = IpPrefix.parse(text);
    const mask = cidr.family === 4 ? cl.nodeMask.ipv4 : cl.nodeMask.ipv6;
    if (mask < cidr.prefixLength) {
      throw new ConfigError(
        `nomad.cluster.nodeMask.ipv${cidr.family}`,
        `/${mask} is wider than the cluster CIDR ${text}`,
        `use a node mask of at least /${cidr.prefixLength}`,
      );
    }
    const svc = c.serviceCIDRs.find((s) => IpPrefix.parse(s).overlaps(cidr));
    if (svc)
      throw new ConfigError(at, `${text} overlaps the service CIDR ${svc}`, "give VIPs a range of their own");
    const peer = peerCIDRs.find((p) => p.cidr.overlaps(cidr));
    if (peer) {
      throw new ConfigError(
        at,
        `${text} overlaps the pod CIDR of peer ${peer.name}`,
        "static peers need pod CIDRs outside the cluster CIDRs",
      );
    }
  }
}

/** Validates a parsed config object (from YAML or tests) against the contract. */
export function validateConfig(raw: unknown): NkitdConfig {
  const r = nkitdConfig.safeParse(raw);
  if (!r.success) {
    const issue = reportedIssue(r.error);
    const { problem, fix } = complaint.heard(issue);
    throw new ConfigError(pathText(issuePath(issue)) || "(root)", problem, fix);
  }
  checkRelations(r.data);
  return r.data;
}

/** Whether v contains itself (what a YAML alias inside its own anchor decodes to). */
function isCyclic(v: unknown, path = new Set<object>()): boolean {
  if (v === null || typeof v !== "object") return false;
  if (path.has(v)) return true;
  path.add(v);
  const found = Object.values(v).some((x) => isCyclic(x, path));
  path.delete(v);
  return found;
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
  if (isCyclic(raw)) {
    throw new ConfigError(
      "(file)",
      `${file} refers to itself: a YAML alias (*name) inside its own anchor (&name)`,
      "replace the alias with the values it stands for",
    );
  }
  return validateConfig(raw);
}
