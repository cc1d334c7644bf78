// Node-local IPAM: one pod CIDR per family, allocations keyed by endpoint id (idempotent), each
// allocation persisted (one file, atomic replace) before any caller sees its address, so a crash
// never hands the same address out twice.
import { InvalidArgumentError, IpamConflictError, IpamExhaustedError, StateCorruptError } from "../errors.js";
import type { Logger } from "../log.js";
import { fileNameOfKey, RecordStore } from "../state/json-store.js";
import { count, ipAddress, object, optional, string } from "../state/shape.js";
import { IpAddress, type IpFamily, IpPrefix } from "../util/ip.js";

/** Owner tags of the front doors: CRI pods (reserved by nkit-cni in ipam mode, wired at NRI RUN),
 * CNI-wired containers (nerdctl, Nomad) and network namespaces wired directly (the admin API, the
 * demo, the benchmarks). NRI Synchronize only ever collects CRI ones. */
export const IpamOwner = { CRI: "cri", CNI: "cni", API: "api" } as const;

interface IpamOptions {
  /** At most one CIDR per family; omit the v6 one to run v4-only. */
  podCIDRs: readonly string[];
  /** One JSON file per allocation; the one-file `<stateDir>.json` of earlier builds is moved in. */
  stateDir: string;
  /** Hears about an allocation file a power loss tore, moved aside (RecordStore unsynced). */
  log?: Logger;
}

export interface AddressRequest {
  /** A specific IPv4 address to hand out when free. */
  ipv4?: string;
  ipv6?: string;
  /** Which front door made the allocation (e.g. "cri", "cni"); lets reconcilers collect only their own. */
  owner?: string;
}

export interface Allocation {
  id: string;
  ipv4?: string;
  ipv6?: string;
  owner?: string;
  /** When it was made (epoch ms): reconcilers spare recent ones whose pod may still be starting. */
  createdAt?: number;
}

/** The addresses of an allocation, as the datapath takes them (absent families left out). */
export function addressesOf(a: Allocation): { ipv4?: string; ipv6?: string } {
  const out: { ipv4?: string; ipv6?: string } = {};
  if (a.ipv4) out.ipv4 = a.ipv4;
  if (a.ipv6) out.ipv6 = a.ipv6;
  return out;
}

interface PoolUsage {
  cidr: string;
  family: IpFamily;
  size: bigint;
  used: number;
}

const allocationShape = object<Allocation>({
  id: string,
  ipv4: optional(ipAddress(4)),
  ipv6: optional(ipAddress(6)),
  owner: optional(string),
  createdAt: optional(count),
});

/** The addresses of one pod CIDR, by integer value: next-fit needs arithmetic, not text. */
class Pool {
  readonly used = new Set<bigint>();
  private readonly first: bigint;
  private readonly last: bigint;
  private cursor: bigint;

  constructor(readonly cidr: IpPrefix) {
    const size = cidr.size;
    const network = cidr.network.value;
    // Skip the network address (and, for IPv4 prefixes with room, broadcast): pods are /32 or /128,
    // but tools and humans still treat those as special.
    this.first = network + (size > 2n ? 1n : 0n);
    this.last = network + size - 1n - (cidr.family === 4 && size > 2n ? 1n : 0n);
    this.cursor = this.first;
  }

  /** An address of the CIDR that IPAM hands out (not the network or broadcast address). */
  assignable(ip: IpAddress): boolean {
    return this.cidr.contains(ip) && ip.value >= this.first && ip.value <= this.last;
  }

  get capacity(): bigint {
    return this.last - this.first + 1n;
  }

  /** Next-fit: addresses are not reused immediately after release, which keeps stale peers harmless. */
  next(): bigint | undefined {
    const span = this.capacity;
    let v = this.cursor;
    for (let i = 0n; i < span; i++) {
      if (!this.used.has(v)) {
        this.cursor = v === this.last ? this.first : v + 1n;
        return v;
      }
      v = v === this.last ? this.first : v + 1n;
    }
    return undefined;
  }
}

export class Ipam {
  private readonly byId: RecordStore<Allocation>;

  private constructor(
    private readonly pools: Partial<Record<IpFamily, Pool>>,
    private readonly stateDir: string,
    log?: Logger,
  ) {
    this.byId = RecordStore.inDirectory({
      dir: stateDir,
      version: 1,
      record: allocationShape,
      key: (a) => a.id,
      // Endpoint ids of the API may be any text.
      fileName: fileNameOfKey,
      legacyFile: { path: `${stateDir}.json`, field: "allocations" },
      // Addresses of running pods, which die with the boot that loses the page cache: no fsync on
      // the request path (the CNI host-local plugin does none either).
      unsynced: {
        onDiscarded: (path, movedTo, why) =>
          log?.warn(
            { path, movedTo, err: why },
            "an IPAM allocation torn by a power loss was moved aside; its pod died with that boot",
          ),
      },
      // Starting without it would hand running pods' addresses out again.
      fix: "restore it from a backup (docs/operations.md, Backup and restore); moving it aside would let nkitd give running pods' addresses to new ones",
    });
  }

  /** Loads persisted allocations; allocations outside the configured CIDRs are kept (so nothing live is reused) and reported by `foreign()`. */
  static open(opts: IpamOptions): Ipam {
    const pools: Partial<Record<IpFamily, Pool>> = {};
    for (const text of opts.podCIDRs) {
      const cidr = IpPrefix.parse(text);
      if (pools[cidr.family]) {
        throw new InvalidArgumentError(
          `podCIDRs: more than one IPv${cidr.family} CIDR (${text}); give one per family`,
        );
      }
      pools[cidr.family] = new Pool(cidr);
    }
    if (!pools[4] && !pools[6]) {
      throw new InvalidArgumentError(
        "podCIDRs: at least one CIDR is required, e.g. [10.47.0.0/24, fd47::/64]",
      );
    }
    const ipam = new Ipam(pools, opts.stateDir, opts.log);
    for (const a of ipam.byId.list()) ipam.adopt(a);
    return ipam;
  }

  private adopt(a: Allocation): void {
    for (const addr of [a.ipv4, a.ipv6]) {
      if (addr === undefined) continue;
      const ip = IpAddress.parse(addr);
      const pool = this.pools[ip.family];
      if (pool?.used.has(ip.value)) {
        throw new StateCorruptError(this.stateDir, `${addr} is held by two allocations`);
      }
      pool?.used.add(ip.value);
    }
  }

  get(id: string): Allocation | undefined {
    return this.byId.get(id);
  }

  list(): Allocation[] {
    return this.byId.list();
  }

  /** Allocations whose addresses lie outside today's pools (the CIDR changed under them). */
  foreign(): Allocation[] {
    return this.list().filter((a) =>
      [a.ipv4, a.ipv6].some((addr) => {
        if (addr === undefined) return false;
        const ip = IpAddress.parse(addr);
        return !this.pools[ip.family]?.cidr.contains(ip);
      }),
    );
  }

  usage(): PoolUsage[] {
    return ([4, 6] as const).flatMap((f) => {
      const pool = this.pools[f];
      return pool ? [{ cidr: pool.cidr.text, family: f, size: pool.capacity, used: pool.used.size }] : [];
    });
  }

  /**
   * Returns the endpoint's addresses, allocating one per configured family on first call. Calling
   * again with the same id returns the same addresses; a request that contradicts them is refused.
   */
  allocate(id: string, req: AddressRequest = {}): Allocation {
    if (!id) throw new InvalidArgumentError("IPAM allocation needs a non-empty endpoint id");
    const existing = this.byId.get(id);
    if (existing) {
      for (const f of [4, 6] as const) {
        const want = f === 4 ? req.ipv4 : req.ipv6;
        const have = f === 4 ? existing.ipv4 : existing.ipv6;
        if (want !== undefined && IpAddress.parse(want).text !== have) {
          throw new IpamConflictError(
            `endpoint ${id} already holds ${have ?? `no IPv${f} address`}, not ${want}; release it first`,
          );
        }
      }
      return existing;
    }
    const picked: Partial<Record<IpFamily, IpAddress>> = {};
    for (const f of [4, 6] as const) {
      const pool = this.pools[f];
      const want = f === 4 ? req.ipv4 : req.ipv6;
      if (want !== undefined) {
        const ip = IpAddress.parse(want);
        if (ip.family !== f)
          throw new InvalidArgumentError(`requested ipv${f} "${want}" is an IPv${ip.family} address`);
        if (!pool?.assignable(ip)) {
          throw new IpamConflictError(
            `requested ${want} is not an assignable address of the pod CIDR ${pool?.cidr.text ?? `(no IPv${f} pool)`}`,
          );
        }
        if (pool.used.has(ip.value)) {
          const owner = this.byId
            .list()
            .find((a) => [a.ipv4, a.ipv6].some((x) => x !== undefined && IpAddress.parse(x).equals(ip)));
          throw new IpamConflictError(
            `requested ${want} is already assigned to endpoint ${owner?.id ?? "?"}`,
          );
        }
        picked[f] = ip;
      } else if (pool) {
        const v = pool.next();
        if (v === undefined) throw new IpamExhaustedError(pool.cidr.text, pool.used.size);
        picked[f] = IpAddress.fromValue(f, v);
      }
    }
    const alloc: Allocation = { id, createdAt: Date.now() };
    if (req.owner !== undefined) alloc.owner = req.owner;
    if (picked[4] !== undefined) alloc.ipv4 = picked[4].text;
    if (picked[6] !== undefined) alloc.ipv6 = picked[6].text;
    this.byId.put(alloc);
    if (picked[4] !== undefined) this.pools[4]?.used.add(picked[4].value);
    if (picked[6] !== undefined) this.pools[6]?.used.add(picked[6].value);
    return { ...alloc };
  }

  /** Frees the endpoint's addresses; returns what was released, or undefined when it held none. */
  release(id: string): Allocation | undefined {
    const a = this.byId.delete(id);
    if (!a) return undefined;
    for (const addr of [a.ipv4, a.ipv6]) {
      if (addr === undefined) continue;
      const ip = IpAddress.parse(addr);
      this.pools[ip.family]?.used.delete(ip.value);
    }
    return { ...a };
  }
}
