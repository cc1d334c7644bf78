// Nomad's native services as nkit services: one service per Nomad (namespace, name) and address
// family, named nomad.<namespace>.<name> (IPv6: .v6 appended), whose backends are the registrations'
// address:port pairs that no failing check took out. Its VIP is a tag `nkit.vip=<address>` when one
// is given, otherwise a stable address of the family's serviceCIDR: a hash of namespace/name, so
// every nkit host and every nkitd restart gives the service the same VIP without coordination. Two
// services hashing to the same address (rare: a /16 holds 65534) are settled by name: the one that
// sorts first keeps it, the other takes its next hash. Tags: `nkit.port=<n>` sets the VIP's port
// (default: the registrations' port), `nkit.external` makes it reachable per packet from other hosts.
import { DEFAULT_AFFINITY_TIMEOUT_SECONDS, type ServiceSpec } from "../services/spec.js";
import { IpAddress, type IpFamily, type IpPrefix } from "../util/ip.js";
import type { ServiceRegistration } from "./client.js";

export const NomadTag = { vip: "nkit.vip=", port: "nkit.port=", external: "nkit.external" } as const;

const NAME_RE = /^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$/;

export interface NomadServiceProblem {
  service: string;
  problem: string;
}

/** The nkit service name of a Nomad service in one family, or undefined when it makes no valid name. */
export function nomadServiceName(namespace: string, name: string, family: IpFamily): string | undefined {
  const n = `nomad.${namespace}.${name}${family === 6 ? ".v6" : ""}`.toLowerCase();
  return NAME_RE.test(n) ? n : undefined;
}

/** FNV-1a, 64 bits: a hash every host computes alike. */
function fnv1a64(text: string): bigint {
  let h = 0xcbf29ce484222325n;
  for (const byte of Buffer.from(text, "utf8")) {
    h ^= BigInt(byte);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return h;
}

/**
 * Stable VIPs of `keys` in `prefix`, settled by name order: the same keys give the same VIPs on any
 * host. Skips the network address (and IPv4's broadcast) and the addresses in `taken`.
 */
export function stableVips(
  keys: readonly string[],
  prefix: IpPrefix,
  taken: ReadonlySet<string> = new Set(),
): Map<string, IpAddress> {
  const usable = prefix.size - (prefix.family === 4 ? 2n : 1n);
  const out = new Map<string, IpAddress>();
  if (usable <= 0n) return out;
  const used = new Set(taken);
  const take = (key: string, offset: bigint): boolean => {
    const vip = IpAddress.fromValue(prefix.family, prefix.network.value + 1n + offset);
    const text = vip.toString();
    if (used.has(text)) return false;
    used.add(text);
    out.set(key, vip);
    return true;
  };
  for (const key of [...keys].sort()) {
    const h0 = fnv1a64(key) % usable;
    let placed = take(key, h0);
    // A few more hashes, then the next free address after the first (a nearly full prefix).
    for (let i = 1; i < 16 && !placed; i++) placed = take(key, fnv1a64(`${key}#${i}`) % usable);
    for (let j = 1n; !placed && j < usable && j <= 65536n; j++) placed = take(key, (h0 + j) % usable);
  }
  return out;
}

/** The port most registrations use (the lowest on a tie). */
function commonPort(regs: readonly ServiceRegistration[]): number {
  const counts = new Map<number, number>();
  for (const r of regs) counts.set(r.Port, (counts.get(r.Port) ?? 0) + 1);
  return [...counts].sort((a, b) => b[1] - a[1] || a[0] - b[0])[0]?.[0] ?? 0;
}

function tagValue(tags: readonly string[], prefix: string): string | undefined {
  return tags.find((t) => t.startsWith(prefix))?.slice(prefix.length);
}

/**
 * The nkit services of Nomad's registrations. `unhealthy` holds registration ids a failing check took
 * out; a service whose every backend is out keeps its VIP with no backends (connections refused).
 */
export function nomadServiceSpecs(
  registrations: Iterable<ServiceRegistration>,
  unhealthy: ReadonlySet<string>,
  serviceCIDRs: readonly IpPrefix[],
): { specs: ServiceSpec[]; problems: NomadServiceProblem[] } {
  const groups = new Map<string, ServiceRegistration[]>();
  for (const r of registrations) {
    const key = `${r.Namespace}/${r.ServiceName}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  const problems: NomadServiceProblem[] = [];
  const specs: ServiceSpec[] = [];
  const plans: {
    key: string;
    family: IpFamily;
    vip?: IpAddress;
    regs: ServiceRegistration[];
    tags: string[];
  }[] = [];
  for (const [key, regs] of [...groups].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    const tags = [...new Set(regs.flatMap((r) => r.Tags ?? []))].sort();
    const vipTag = tagValue(tags, NomadTag.vip);
    const byFamily = (f: IpFamily) => regs.filter((r) => IpAddress.tryParse(r.Address)?.family === f);
    if (vipTag !== undefined) {
      const vip = IpAddress.tryParse(vipTag);
      if (!vip) {
        problems.push({ service: key, problem: `tag ${NomadTag.vip}${vipTag} is not an IP address` });
        continue;
      }
      plans.push({ key, family: vip.family, vip, regs: byFamily(vip.family), tags });
      continue;
    }
    for (const family of [4, 6] as const) {
      const mine = byFamily(family);
      if (mine.length === 0) continue;
      if (!serviceCIDRs.some((c) => c.family === family)) {
        problems.push({
          service: key,
          problem: `IPv${family} backends but no IPv${family} serviceCIDR for a VIP`,
        });
        continue;
      }
      plans.push({ key, family, regs: mine, tags });
    }
  }
  const vips: Record<IpFamily, Map<string, IpAddress>> = { 4: new Map(), 6: new Map() };
  const pinned = new Set(plans.flatMap((p) => (p.vip ? [p.vip.toString()] : [])));
  for (const family of [4, 6] as const) {
    const cidr = serviceCIDRs.find((c) => c.family === family);
    // The (service, family) pairs without a VIP tag take one from the serviceCIDR.
    const hashed = plans.filter((p) => p.family === family && !p.vip).map((p) => p.key);
    if (cidr) vips[family] = stableVips(hashed, cidr, pinned);
  }
  for (const p of plans) {
    const [namespace = "", name = ""] = p.key.split("/");
    const specName = nomadServiceName(namespace, name, p.family);
    if (!specName) {
      problems.push({
        service: p.key,
        problem: "makes no valid nkit service name (lowercase, at most 64 characters)",
      });
      continue;
    }
    const vip = p.vip ?? vips[p.family].get(p.key);
    if (!vip) {
      problems.push({ service: p.key, problem: `no free address left in the IPv${p.family} serviceCIDR` });
      continue;
    }
    const portTag = tagValue(p.tags, NomadTag.port);
    const port = portTag !== undefined ? Number(portTag) : commonPort(p.regs);
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      problems.push({ service: p.key, problem: `tag ${NomadTag.port}${portTag} is not a port (1-65535)` });
      continue;
    }
    const backends = p.regs
      .filter((r) => !unhealthy.has(r.ID))
      .sort((a, b) => (a.ID < b.ID ? -1 : 1))
      .map((r) => ({ address: IpAddress.parse(r.Address).toString(), port: r.Port }));
    specs.push({
      name: specName,
      vip: vip.toString(),
      family: p.family,
      ports: [{ port, protocol: "tcp", targetPort: port }],
      backends,
      affinity: "none",
      affinityTimeoutSeconds: DEFAULT_AFFINITY_TIMEOUT_SECONDS,
      ...(p.tags.includes(NomadTag.external) ? { external: true } : {}),
    });
  }
  return { specs, problems };
}
