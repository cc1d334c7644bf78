// The socket-level load-balancer's kernel objects (bpf/sock_lb.bpf.c): its maps, pinned by name
// under nkitd's bpffs dir, and its eight cgroup links, pinned under <bpffs>/lb/<hook>. This is the
// LbTable the service manager writes: one frontend at a time, in an order a reader on another CPU
// never sees half of (backend slots first, the count last; on removal the frontend first).
// A restarted nkitd adopts the pinned links and swaps their programs in place (BPF_LINK_UPDATE), so
// connects keep being translated while it restarts.
import { existsSync, readFileSync, statSync } from "node:fs";
import { cgroupHookOf } from "../bpf/constants.js";
import { type SockLbObject, sockLbObject } from "../bpf/gen/sock_lb.skel.js";
import {
  LB_REASONS,
  type LbAddress,
  type LbBackendKey,
  LbFlags,
  type LbKey,
  type LbReason,
  type LbService,
  lbAddr,
  lbKey,
} from "../bpf/lb.js";
import { BpfLink } from "../bpf/link.js";
import type { BpfMap, PerCpuMap } from "../bpf/map.js";
import { builtObjectPath } from "../bpf/object.js";
import { PinDir } from "../bpf/pins.js";
import { type MapAddress, mapAddress, mapAddressText, type PrefixKey, syncPrefixSet } from "../bpf/shared.js";
import { Skeleton } from "../bpf/skeleton.js";
import { NotFoundError, NotSupportedError } from "../errors.js";
import type { Logger } from "../log.js";
import { formatHostPort, IpAddress, IpPrefix } from "../util/ip.js";
import type { MaglevFrontend, MaglevTables } from "./maglev-tables.js";
import type { LbTable } from "./manager.js";
import type { LbEntry, Protocol } from "./spec.js";

const PROTO = { tcp: 6, udp: 17 } as const;
const PROTO_NAME: Record<number, Protocol> = { 6: "tcp", 17: "udp" };
const AFFINITY = LbFlags.AFFINITY;
const EXTERNAL = LbFlags.EXTERNAL;

/** A per-packet frontend of more than one backend: the ones with a Maglev table. */
const hasTable = (v: LbService): boolean => (v.flags & EXTERNAL) !== 0 && v.count > 1;
/** Slot counts are u16 in the map. */
const MAX_BACKENDS = 0xffff;
/** Frontend ids are u32; 0 means none. */
const MAX_ID = 0xfffffffe;
/** A frontend's key in the mirror of nk_lb_services: the key's bytes as a latin1 string (half of hex). */
const heldKeyOf = (k: LbKey): string => lbKey.encode(k).toString("latin1");

interface SocketLbOptions {
  /** nkitd's bpffs dir: maps by name, links under lb/. */
  bpffsDir: string;
  /** The cgroup v2 directory whose processes (and their descendants) get the load-balancer. */
  cgroup: string;
  objectPath?: string;
  /**
   * The per-packet path's Maglev tables (nk_lb_maglev of the datapath object). Without them
   * external frontends (host ports) work through the socket hooks only: not from other hosts.
   */
  maglev?: MaglevTables;
  /** nkitd's serviceCIDRs: a connect to an address there that no service holds is refused at once. */
  serviceCIDRs?: readonly string[];
  /** Capacities of the maps by name (nkitd's limits:, see lbMapSizes); absent = the object's own. */
  mapSizes?: Readonly<Record<string, number>>;
  log?: Logger;
}

const defaultSockLbObject = (): string => builtObjectPath(sockLbObject.file);

/** The host's cgroup v2 mount: /sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts. */
export function hostCgroup2(mounts = "/proc/mounts"): string {
  for (const line of readFileSync(mounts, "utf8").split("\n")) {
    const [, mountPoint, fsType] = line.split(" ");
    if (fsType === "cgroup2" && mountPoint) return mountPoint;
  }
  throw new NotSupportedError("the socket load-balancer", "a cgroup v2 mount (cgroup2 in /proc/mounts)");
}

function keyOf(e: Pick<LbEntry, "vip" | "port" | "protocol">): LbKey {
  return { ...mapAddress(IpAddress.parse(e.vip)), proto: PROTO[e.protocol], port: e.port };
}

const addressOf = (address: string, port: number): LbAddress => ({
  ...mapAddress(IpAddress.parse(address)),
  port,
});

const textOf = (a: MapAddress): string => mapAddressText(a.family, a.addr);

export class SocketLb implements LbTable {
  private readonly services: BpfMap<LbKey, LbService>;
  private readonly backends: BpfMap<LbBackendKey, LbAddress>;
  private readonly counterMap: PerCpuMap<number, bigint>;
  private readonly conns: PerCpuMap<LbBackendKey, bigint>;
  private readonly serviceCidrs: BpfMap<PrefixKey, number>;
  /** heldKeyOf(frontend key) → its id and slot count, mirrored from nk_lb_services. */
  private readonly held = new Map<string, LbService>();
  /** Every id from here on is free (ids are handed out in order; see allocateId). */
  private nextId = 1;
  private destroyed = false;

  private constructor(
    private readonly skel: Skeleton<SockLbObject>,
    private readonly links: BpfLink[],
    private readonly pins: PinDir,
    private readonly maglev: MaglevTables | undefined,
  ) {
    this.services = skel.maps.nk_lb_services;
    this.backends = skel.maps.nk_lb_backends;
    this.counterMap = skel.maps.nk_lb_counters;
    this.conns = skel.maps.nk_lb_backend_conns;
    this.serviceCidrs = skel.maps.nk_lb_service_cidrs;
    for (const [k, v] of this.services.entries()) {
      this.held.set(heldKeyOf(k), v);
      if (v.id >= this.nextId) this.nextId = v.id + 1;
    }
  }

  /**
   * Loads the programs (reusing pinned maps) and attaches them to the cgroup, adopting links a
   * previous nkitd pinned: a link still attached to the same cgroup gets the new program in place.
   */
  static open(o: SocketLbOptions): SocketLb {
    const st = statSync(o.cgroup, { throwIfNoEntry: false });
    if (!st?.isDirectory()) throw new NotFoundError(`cgroup directory ${o.cgroup} does not exist`);
    const pins = new PinDir(o.bpffsDir).ensure();
    const skel = Skeleton.load(sockLbObject, {
      path: o.objectPath ?? defaultSockLbObject(),
      pinRoot: o.bpffsDir,
      name: "nkit_sock_lb",
      // Only counts: an older build's counter array of fewer reasons is simply made anew.
      recreatable: ["nk_lb_counters"],
      ...(o.mapSizes ? { sizes: o.mapSizes } : {}),
    });
    for (const r of skel.resized) {
      o.log?.warn(
        r,
        `BPF map ${r.name} made anew with ${r.to} entries (was ${r.from}): its entries are gone`,
      );
    }
    const links: BpfLink[] = [];
    try {
      const dir = pins.sub("lb").ensure();
      // Every program of the object runs at the cgroup hook its section names, pinned by that name.
      for (const def of Object.values(sockLbObject.programs)) {
        const hook = cgroupHookOf(def.section);
        if (!hook) {
          throw new NotSupportedError(`program ${def.name} in section ${def.section}`, "cgroup socket hooks");
        }
        const program = skel.programs[def.name];
        const pin = dir.path(hook);
        if (existsSync(pin)) {
          const old = BpfLink.fromPin(pin);
          const info = old.info();
          // A cgroup's id is its kernfs inode number.
          if (info.attached && info.cgroupId === BigInt(st.ino)) {
            old.update(program);
            links.push(old);
            continue;
          }
          old.unpin();
          old.close();
        }
        const link = BpfLink.attachCgroup(program, o.cgroup, hook);
        link.pin(pin);
        links.push(link);
      }
      o.log?.info({ cgroup: o.cgroup }, "socket load-balancer attached");
      const lb = new SocketLb(skel, links, pins, o.maglev);
      lb.setServiceCidrs(o.serviceCIDRs ?? []);
      if (o.maglev) {
        try {
          const built = o.maglev.sync(lb.externalFrontends());
          if (built > 0) o.log?.info({ tables: built, size: o.maglev.size }, "Maglev tables built");
        } catch (e) {
          o.log?.error({ err: e }, "Maglev tables could not be rebuilt: per-packet frontends may drop");
        }
      }
      return lb;
    } catch (e) {
      for (const l of links) l.close();
      skel.close();
      throw e;
    }
  }

  /** The CIDRs whose addresses without a service are refused (ECONNREFUSED) instead of routed. */
  setServiceCidrs(cidrs: readonly string[]): void {
    syncPrefixSet(
      this.serviceCidrs,
      cidrs.map((c) => IpPrefix.parse(c)),
    );
  }

  set(e: LbEntry): void {
    if (e.backends.length > MAX_BACKENDS) {
      throw new NotSupportedError(
        `${e.backends.length} backends for one frontend`,
        `at most ${MAX_BACKENDS}`,
      );
    }
    const key = keyOf(e);
    const heldKey = heldKeyOf(key);
    const before = this.held.get(heldKey);
    const id = before?.id ?? this.allocateId();
    for (const [slot, b] of e.backends.entries()) {
      const addr = addressOf(b.address, b.port);
      const old = before ? this.backends.lookup({ id, slot }) : undefined;
      // A slot that now holds another backend starts counting from zero.
      if (!old || lbAddr.encode(old).compare(lbAddr.encode(addr)) !== 0) this.conns.delete({ id, slot });
      this.backends.update({ id, slot }, addr);
    }
    const external = e.external === true && this.maglev !== undefined && e.backends.length > 0;
    const value: LbService = {
      id,
      count: e.backends.length,
      flags: (e.affinity === "client-ip" ? AFFINITY : 0) | (external ? EXTERNAL : 0),
      affinity_timeout: e.affinityTimeoutSeconds,
    };
    // Per packet the frontend is served only once its Maglev table is in (written before the flag).
    // One backend needs no table (the datapath takes slot 0): most frontends, every host port, skip
    // the RCU grace period each table update costs.
    if (hasTable(value))
      this.maglev?.set(
        id,
        e.backends.map((b) => formatHostPort(b.address, b.port)),
      );
    this.services.update(key, value);
    if (before && hasTable(before) && !hasTable(value)) this.maglev?.remove(id);
    this.held.set(heldKey, value);
    for (let slot = e.backends.length; slot < (before?.count ?? 0); slot++) {
      this.backends.delete({ id, slot });
      this.conns.delete({ id, slot });
    }
  }

  remove(e: Pick<LbEntry, "vip" | "port" | "protocol">): void {
    const key = keyOf(e);
    const heldKey = heldKeyOf(key);
    const before = this.held.get(heldKey);
    if (!before) return;
    this.services.delete(key);
    if (hasTable(before)) this.maglev?.remove(before.id);
    for (let slot = 0; slot < before.count; slot++) {
      this.backends.delete({ id: before.id, slot });
      this.conns.delete({ id: before.id, slot });
    }
    this.held.delete(heldKey);
  }

  /** The per-packet frontends with a Maglev table, with their backends' names as the tables name them. */
  externalFrontends(): MaglevFrontend[] {
    const out: MaglevFrontend[] = [];
    for (const v of this.held.values()) {
      if (!hasTable(v)) continue;
      const backends: string[] = [];
      for (let slot = 0; slot < v.count; slot++) {
        const b = this.backends.lookup({ id: v.id, slot });
        if (b) backends.push(formatHostPort(textOf(b), b.port));
      }
      out.push({ id: v.id, backends });
    }
    return out;
  }

  /** The frontends the maps hold, read back from the kernel. */
  list(): LbEntry[] {
    const out: LbEntry[] = [];
    for (const [k, v] of this.services.entries()) {
      const backends: { address: string; port: number }[] = [];
      for (let slot = 0; slot < v.count; slot++) {
        const b = this.backends.lookup({ id: v.id, slot });
        if (b) backends.push({ address: textOf(b), port: b.port });
      }
      out.push({
        service: "",
        vip: textOf(k),
        port: k.port,
        protocol: PROTO_NAME[k.proto] ?? "tcp",
        backends,
        affinity: v.flags & AFFINITY ? "client-ip" : "none",
        affinityTimeoutSeconds: v.affinity_timeout,
        ...(v.flags & EXTERNAL ? { external: true } : {}),
      });
    }
    return out;
  }

  /** Connections sent to each backend of a frontend (slot order), summed over CPUs. */
  connections(e: Pick<LbEntry, "vip" | "port" | "protocol">): bigint[] {
    const held = this.held.get(heldKeyOf(keyOf(e)));
    if (!held) return [];
    return Array.from({ length: held.count }, (_, slot) =>
      (this.conns.lookup({ id: held.id, slot }) ?? []).reduce((a, b) => a + b, 0n),
    );
  }

  /** Per-reason counters, summed over CPUs. */
  counters(): Record<LbReason, bigint> {
    const out = {} as Record<LbReason, bigint>;
    LB_REASONS.forEach((name, i) => {
      out[name] = (this.counterMap.lookup(i) ?? []).reduce((a, b) => a + b, 0n);
    });
    return out;
  }

  /**
   * Pins again the maps and cgroup links whose pins were removed under this process: without them
   * the links would detach when nkitd exits and a restart would start from empty maps. Returns the
   * paths pinned again.
   */
  repin(): string[] {
    if (this.destroyed) return [];
    const done = this.skel.object.repinMaps();
    for (const l of this.links) {
      const path = l.pinnedPath;
      if (!path || existsSync(path)) continue;
      this.pins.sub("lb").ensure();
      l.pin(path);
      done.push(path);
    }
    return done;
  }

  /** Releases this process's handles; the pinned links keep translating. */
  close(): void {
    for (const l of this.links) l.close();
    this.maglev?.close();
    this.skel.close();
  }

  /** Detaches from the cgroup and removes every pin of the load-balancer (uninstall, tests). */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const l of this.links) {
      l.unpin();
      l.close();
    }
    this.pins.remove("lb");
    this.maglev?.close();
    // The event ring belongs to the datapath object (both write it), which removes its own pins.
    for (const def of Object.values(sockLbObject.maps)) {
      if (def.pinned && def.name !== sockLbObject.maps.nk_events.name) this.pins.remove(def.name);
    }
    this.skel.close();
  }

  /**
   * The next id in order: no set of used ids is kept (at 10,000 frontends it cost ~0.5 MiB). Only
   * once ids ran out (4 billion frontends made) are the held ones scanned for the lowest free id.
   */
  private allocateId(): number {
    if (this.nextId <= MAX_ID) return this.nextId++;
    const used = new Set<number>();
    for (const v of this.held.values()) used.add(v.id);
    for (let id = 1; id <= MAX_ID; id++) if (!used.has(id)) return id;
    throw new NotSupportedError(`${used.size} frontends`, `at most ${MAX_ID}`);
  }
}
