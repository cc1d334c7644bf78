// Wires network namespaces (pod sandboxes) onto the BPF datapath and takes them off again.
//
// A wiring is transactional: every kernel object is created behind an undo step, and any failure
// rolls back everything before the error reaches the caller. A record with phase "wiring" is
// written before the first object exists, so a crash mid-way is repaired at the next start.
// Links and maps are pinned, so a restarted process adopts running endpoints by swapping the
// programs under the pinned links (BPF_LINK_UPDATE): traffic never stops.

import { isIPv4, isIPv6 } from "node:net";
import type { AttachPoint } from "../bpf/constants.js";
import { BpfLink, queryAttached } from "../bpf/link.js";
import { PinDir, removePin } from "../bpf/pins.js";
import { probeNetkit, probeTcx } from "../bpf/probe.js";
import type { BpfProgram } from "../bpf/program.js";
import { EndpointFlags, type EndpointKey } from "../bpf/shared.js";
import {
  AlreadyExistsError,
  InvalidArgumentError,
  NkitError,
  NotFoundError,
  NotSupportedError,
} from "../errors.js";
import type { Ipam } from "../ipam/ipam.js";
import type { Logger } from "../log.js";
import { type Link, netnsInode, Rtnl, sysctlWrite } from "../netlink/index.js";
import { parseIp, parseMac } from "../util/ip.js";
import { KeyedMutex } from "../util/keyed-mutex.js";
import { hostIfName } from "./naming.js";
import { DatapathPrograms } from "./programs.js";
import { ALL_REASON_CODES, reasonName } from "./reasons.js";
import { type DatapathMode, type EndpointRecord, EndpointStore } from "./store.js";

export type DatapathModeSetting = "auto" | DatapathMode;

/** The pod's gateway for veth mode: link-local, answered by a static neighbour entry in the pod. */
export const GATEWAY_V4 = "169.254.1.1";
export const GATEWAY_V6 = "fe80::1";
/** BIG TCP: 192 KiB GSO/GRO for IPv4 and IPv6 where kernel and device accept it. */
export const BIG_TCP_SIZE = 196608;

export interface EndpointManagerOptions {
  mode?: DatapathModeSetting;
  /** bpffs dir owned by this instance: maps by name, endpoints/<dev>/ and uplinks/<dev>/ links. */
  bpffsDir: string;
  /** State dir: endpoints/<dev>.json records. */
  stateDir: string;
  /** Allocates addresses when a wire request brings none. */
  ipam?: Ipam;
  /** Device MTU; 0 or absent = the first uplink's MTU, else 1500. */
  mtu?: number;
  bigTcp?: boolean;
  /** Devices facing the outside: traffic for local pods arriving there is redirected straight in. */
  uplinks?: readonly string[];
  /** Path of datapath.bpf.o (default: the package's bpf/build). */
  objectPath?: string;
  log?: Logger;
}

export interface WireRequest {
  /** Endpoint id, e.g. the pod sandbox id; the host device name derives from it. */
  id: string;
  netnsPath: string;
  /** Interface name inside the netns; default eth0. */
  ifName?: string;
  /** Addresses to use; when absent, IPAM allocates one per configured family. */
  addresses?: { ipv4?: string; ipv6?: string };
  labels?: Record<string, string>;
}

export interface WiredEndpoint {
  id: string;
  epNum: number;
  mode: DatapathMode;
  hostIfName: string;
  hostIfindex: number;
  podIfName: string;
  netnsPath: string;
  addresses: { ipv4?: string; ipv6?: string };
  labels: Record<string, string>;
}

export interface EndpointCounters {
  [reason: string]: { packets: bigint; bytes: bigint };
}

type Undo = () => unknown | Promise<unknown>;

const IFNAME_RE = /^[A-Za-z0-9_.-]{1,15}$/;
const LINK_PINS = { from: "from-container", to: "to-container" } as const;

function toWired(r: EndpointRecord): WiredEndpoint {
  return {
    id: r.id,
    epNum: r.epNum,
    mode: r.mode,
    hostIfName: r.hostIfName,
    hostIfindex: r.hostIfindex,
    podIfName: r.podIfName,
    netnsPath: r.netnsPath,
    addresses: { ...r.addresses },
    labels: { ...r.labels },
  };
}

function macBytes(mac: string | undefined): Buffer {
  return mac ? parseMac(mac) : Buffer.alloc(6);
}

export function endpointKeyOf(address: string): EndpointKey {
  const { family, bytes } = parseIp(address);
  const addr = Buffer.alloc(16);
  bytes.copy(addr);
  return { family, addr };
}

export class EndpointManager {
  readonly mode: DatapathMode;
  private readonly store: EndpointStore;
  private readonly pins: PinDir;
  private readonly locks = new KeyedMutex();
  private mtu = 1500;
  private closed = false;

  private constructor(
    private readonly opts: EndpointManagerOptions,
    mode: DatapathMode,
    private readonly progs: DatapathPrograms,
    private readonly host: Rtnl,
  ) {
    this.mode = mode;
    this.store = new EndpointStore(opts.stateDir);
    this.pins = new PinDir(opts.bpffsDir);
  }

  /**
   * Probes the kernel, loads the programs (reusing pinned maps), adopts the endpoints recorded by a
   * previous process and repairs half-finished ones. An explicit `netkit` mode on a kernel without
   * netkit fails here, once, rather than on every pod.
   */
  static async start(opts: EndpointManagerOptions): Promise<EndpointManager> {
    const mode = resolveMode(opts.mode ?? "auto", opts.log);
    new PinDir(opts.bpffsDir).ensure();
    const progs = DatapathPrograms.load(opts.bpffsDir, opts.objectPath);
    let host: Rtnl | undefined;
    try {
      host = await Rtnl.host();
      const mgr = new EndpointManager(opts, mode, progs, host);
      await mgr.resolveMtu();
      await mgr.reconcile();
      for (const u of opts.uplinks ?? []) await mgr.attachUplink(u);
      return mgr;
    } catch (e) {
      await host?.close();
      progs.close();
      throw e;
    }
  }

  /** Releases this process's handles; pinned links and maps keep the datapath forwarding. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.locks.idle();
    await this.host.close();
    this.progs.close();
  }

  list(): WiredEndpoint[] {
    return this.store
      .list()
      .filter((r) => r.phase === "wired")
      .map(toWired);
  }

  get(id: string): WiredEndpoint | undefined {
    const r = this.store.get(hostIfName(id));
    return r && r.phase === "wired" && r.id === id ? toWired(r) : undefined;
  }

  /**
   * Checks that a wired endpoint's pod side is still what wiring made: the interface exists, is up
   * and holds every address. Returns the problem, or undefined when intact. Something in the pod
   * (its sysctls, a process with CAP_NET_ADMIN) can undo wiring after the fact.
   */
  async verify(id: string): Promise<string | undefined> {
    const r = this.store.get(hostIfName(id));
    if (!r || r.id !== id || r.phase !== "wired") return `endpoint ${id} is not wired`;
    let pod: Rtnl;
    try {
      pod = await Rtnl.inNetns(r.netnsPath);
    } catch (e) {
      return `network namespace ${r.netnsPath}: ${(e as Error).message}`;
    }
    try {
      const link = await pod.getLink(r.podIfName);
      if (!link) return `${r.podIfName} is gone from ${r.netnsPath}`;
      if (!link.up) return `${r.podIfName} in ${r.netnsPath} is down`;
      const have = new Set((await pod.listAddresses({ link: link.index })).map((a) => a.address));
      for (const want of [r.addresses.ipv4, r.addresses.ipv6]) {
        if (want !== undefined && !have.has(want))
          return `${r.podIfName} in ${r.netnsPath} lost address ${want}`;
      }
      return undefined;
    } finally {
      await pod.close();
    }
  }

  /** Replaces a wired endpoint's labels (its identity); returns the endpoint, or undefined if not wired. */
  setLabels(id: string, labels: Record<string, string>): WiredEndpoint | undefined {
    const r = this.store.get(hostIfName(id));
    if (!r || r.id !== id || r.phase !== "wired") return undefined;
    r.labels = { ...labels };
    this.store.put(r);
    return toWired(r);
  }

  /** Per-reason packet and byte counters of one endpoint (summed over CPUs). */
  counters(id: string): EndpointCounters {
    const r = this.store.get(hostIfName(id));
    if (!r || r.id !== id) throw new NotFoundError(`endpoint ${id} is not wired`);
    const out: EndpointCounters = {};
    for (const reason of ALL_REASON_CODES) {
      const perCpu = this.progs.counters.lookup({ ep_id: r.epNum, reason });
      if (!perCpu) continue;
      let packets = 0n;
      let bytes = 0n;
      for (const c of perCpu) {
        packets += c.packets;
        bytes += c.bytes;
      }
      out[reasonName(reason)] = { packets, bytes };
    }
    return out;
  }

  private exclusive<T>(id: string, fn: () => Promise<T>): Promise<T> {
    return this.locks.run(id, fn);
  }

  wire(req: WireRequest): Promise<WiredEndpoint> {
    if (this.closed)
      return Promise.reject(new NkitError("NKIT_INVALID_ARGUMENT", "EndpointManager is closed"));
    if (!req.id) return Promise.reject(new InvalidArgumentError("wire: endpoint id must not be empty"));
    return this.exclusive(req.id, () => this.wireLocked(req));
  }

  unwire(id: string): Promise<boolean> {
    return this.exclusive(id, () => this.unwireLocked(id));
  }

  private async wireLocked(req: WireRequest): Promise<WiredEndpoint> {
    const ifName = req.ifName ?? "eth0";
    if (!IFNAME_RE.test(ifName)) {
      throw new InvalidArgumentError(
        `wire ${req.id}: interface name "${ifName}" is invalid (1-15 of [A-Za-z0-9_.-])`,
      );
    }
    // Throws NetnsError for a missing or non-netns path before anything is created.
    const podNsInode = netnsInode(req.netnsPath);
    const hostName = hostIfName(req.id);
    const existing = this.store.get(hostName);
    if (existing?.phase === "wired") {
      if (existing.id !== req.id) {
        throw new AlreadyExistsError(
          `wire ${req.id}: host device ${hostName} belongs to endpoint ${existing.id}`,
        );
      }
      if (sameInode(existing.netnsPath, podNsInode)) return toWired(existing);
      throw new AlreadyExistsError(
        `wire ${req.id}: already wired into ${existing.netnsPath}; unwire it before wiring it into ${req.netnsPath}`,
      );
    }
    if (existing) await this.teardown(existing);

    const undo: Undo[] = [];
    const ipamOwned = !(req.addresses && (req.addresses.ipv4 || req.addresses.ipv6));
    if (ipamOwned && !this.opts.ipam) {
      throw new InvalidArgumentError(`wire ${req.id}: no addresses given and no IPAM configured`);
    }
    const record: EndpointRecord = {
      version: 1,
      id: req.id,
      epNum: this.nextEpNum(),
      phase: "wiring",
      mode: this.mode,
      netnsPath: req.netnsPath,
      podIfName: ifName,
      hostIfName: hostName,
      hostIfindex: 0,
      addresses: ipamOwned ? {} : validateAddresses(req.id, req.addresses ?? {}),
      ipamOwned,
      labels: { ...(req.labels ?? {}) },
      createdAt: new Date().toISOString(),
    };
    // The record precedes the IPAM allocation too: killed right after allocating, the next start
    // finds the record (ipamOwned) and releases the addresses instead of leaking them.
    this.store.put(record);
    undo.push(() => this.store.delete(hostName));
    const addresses = record.addresses;
    if (ipamOwned) {
      try {
        const a = this.opts.ipam!.allocate(req.id);
        undo.push(() => this.opts.ipam?.release(req.id));
        if (a.ipv4) addresses.ipv4 = a.ipv4;
        if (a.ipv6) addresses.ipv6 = a.ipv6;
      } catch (e) {
        await rollback(undo, this.opts.log);
        throw e;
      }
    }
    // Refuse an address another endpoint holds before creating anything (the map insert would only
    // say "key exists", after the device was made).
    const clash = this.addressHolder(addresses, hostName);
    if (clash) {
      await rollback(undo, this.opts.log);
      throw new AlreadyExistsError(
        `wire ${req.id}: address ${clash.address} is already used by ${clash.holder ? `endpoint ${clash.holder}` : "another endpoint"}; unwire it first or pick another address`,
      );
    }
    let pod: Rtnl | undefined;
    try {
      const hostLink = await this.createPair(hostName, ifName, req.netnsPath);
      undo.push(() => this.host.deleteLink(hostName));
      record.hostIfindex = hostLink.index;
      this.store.put(record);

      pod = await Rtnl.inNetns(req.netnsPath);
      const podLink = await pod.requireLink(ifName);

      // Maps and programs first, device up last: no packet crosses before the datapath is ready.
      const keys = this.endpointKeys(addresses);
      const value = {
        ifindex: hostLink.index,
        ep_id: record.epNum,
        flags: this.mode === "netkit" ? EndpointFlags.NETKIT : EndpointFlags.L2,
        mac: macBytes(podLink.mac),
        host_mac: macBytes(hostLink.mac),
      };
      this.progs.devices.update(hostLink.index, record.epNum);
      undo.push(() => this.progs.devices.delete(hostLink.index));
      for (const k of keys) {
        this.progs.endpoints.update(k, value, "noexist");
        undo.push(() => this.progs.endpoints.delete(k));
      }
      undo.push(() => this.clearCounters(record.epNum));
      undo.push(() => this.pins.sub("endpoints").remove(hostName));
      await this.attachEndpointLinks(hostName, hostLink.index);

      await this.configurePod(pod, podLink, hostLink, addresses);
      await this.configureHost(hostLink, podLink, addresses);

      record.phase = "wired";
      this.store.put(record);
      this.opts.log?.debug({ id: req.id, dev: hostName, addresses }, "endpoint wired");
      return toWired(record);
    } catch (e) {
      // The device goes first: once it is gone no program runs for this endpoint, so no packet can
      // re-create the counter entries the other undo steps remove (the later delete is a no-op).
      if (record.hostIfindex) undo.push(() => this.host.deleteLink(hostName));
      await rollback(undo, this.opts.log);
      throw wrap(e, `wiring endpoint ${req.id} (${hostName} <-> ${ifName} in ${req.netnsPath})`);
    } finally {
      await pod?.close();
    }
  }

  private async unwireLocked(id: string): Promise<boolean> {
    const rec = this.store.get(hostIfName(id));
    if (!rec || rec.id !== id) {
      // Nothing recorded: still remove any device or pins a crashed wiring may have left.
      const name = hostIfName(id);
      const dev = await this.host.deleteLink(name);
      const pins = this.pins.sub("endpoints").remove(name);
      return dev || pins;
    }
    await this.teardown(rec);
    this.opts.log?.debug({ id, dev: rec.hostIfName }, "endpoint unwired");
    return true;
  }

  /** Removes everything an endpoint record stands for; safe on partial wirings and repeats. */
  private async teardown(rec: EndpointRecord): Promise<void> {
    // Device first: after that no program runs on its hooks (links detach asynchronously once
    // unpinned), so nothing re-creates counters or hits the unknown-source path after the maps
    // were cleaned below. Deleting the host side also removes the pod side, its routes and neighbours.
    await this.host.deleteLink(rec.hostIfName);
    this.pins.sub("endpoints").remove(rec.hostIfName);
    for (const k of this.endpointKeys(rec.addresses)) {
      const cur = this.progs.endpoints.lookup(k);
      if (cur && cur.ifindex === rec.hostIfindex) this.progs.endpoints.delete(k);
    }
    if (rec.hostIfindex && this.progs.devices.lookup(rec.hostIfindex) === rec.epNum) {
      this.progs.devices.delete(rec.hostIfindex);
    }
    this.clearCounters(rec.epNum);
    if (rec.ipamOwned) this.opts.ipam?.release(rec.id);
    this.store.delete(rec.hostIfName);
  }

  /** The first of the addresses that is already in the endpoint map, with the recorded holder
   * (other than the record of `self`, the host device being wired). */
  private addressHolder(
    a: { ipv4?: string; ipv6?: string },
    self: string,
  ): { address: string; holder?: string } | undefined {
    for (const address of [a.ipv4, a.ipv6]) {
      if (address === undefined) continue;
      const key = endpointKeyOf(address);
      if (!this.progs.endpoints.lookup(key)) continue;
      const holder = this.store
        .list()
        .find(
          (r) =>
            r.hostIfName !== self &&
            [r.addresses.ipv4, r.addresses.ipv6].some(
              (x) => x !== undefined && endpointKeyOf(x).addr.equals(key.addr),
            ),
        );
      return holder ? { address, holder: holder.id } : { address };
    }
    return undefined;
  }

  private clearCounters(epNum: number): void {
    for (const reason of ALL_REASON_CODES) this.progs.counters.delete({ ep_id: epNum, reason });
  }

  private nextEpNum(): number {
    const used = new Set(this.store.list().map((r) => r.epNum));
    let n = 1;
    while (used.has(n)) n++;
    return n;
  }

  private endpointKeys(a: { ipv4?: string; ipv6?: string }): EndpointKey[] {
    return [a.ipv4, a.ipv6].filter((x): x is string => x !== undefined).map(endpointKeyOf);
  }

  private async createPair(hostName: string, podIfName: string, netnsPath: string): Promise<Link> {
    const common = {
      name: hostName,
      peerName: podIfName,
      peerNetnsPath: netnsPath,
      mtu: this.mtu,
      peerMtu: this.mtu,
    };
    if (this.mode === "netkit") {
      // L3, host side passes, pod side blackholes until the programs are attached (fail closed).
      return this.host.createNetkit({ ...common, mode: "l3", policy: "pass", peerPolicy: "drop" });
    }
    return this.host.createVeth(common);
  }

  /** Attaches both programs concurrently (each attach waits for an RCU grace period) and pins them. */
  private async attachEndpointLinks(hostName: string, ifindex: number): Promise<void> {
    const dir = this.pins.sub("endpoints").sub(hostName).ensure();
    const attach = async (prog: BpfProgram, which: "from" | "to"): Promise<void> => {
      const link =
        this.mode === "netkit"
          ? await BpfLink.attachNetkitAsync(prog, {
              primaryIfindex: ifindex,
              kind: which === "from" ? "peer" : "primary",
            })
          : await BpfLink.attachTcxAsync(prog, {
              ifindex,
              direction: which === "from" ? "ingress" : "egress",
            });
      try {
        link.pin(dir.path(LINK_PINS[which]));
      } finally {
        link.close();
      }
    };
    const results = await Promise.allSettled([
      attach(this.progs.fromContainer, "from"),
      attach(this.progs.toContainer, "to"),
    ]);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (failed) throw failed.reason;
  }

  private async configurePod(
    pod: Rtnl,
    podLink: Link,
    hostLink: Link,
    a: { ipv4?: string; ipv6?: string },
  ): Promise<void> {
    await pod.setLinkUp("lo");
    if (this.opts.bigTcp !== false) await this.applyBigTcp(pod, podLink.index);
    if (a.ipv4) await pod.addAddress({ link: podLink.index, address: `${a.ipv4}/32` });
    if (a.ipv6) await pod.addAddress({ link: podLink.index, address: `${a.ipv6}/128`, noDad: true });
    await pod.setLinkUp(podLink.index);
    if (this.mode === "netkit") {
      // L3 device without ARP: everything simply leaves through it.
      if (a.ipv4) await pod.addRoute({ dst: "default", family: 4, dev: podLink.index, scope: "link" });
      if (a.ipv6) await pod.addRoute({ dst: "default", family: 6, dev: podLink.index });
      return;
    }
    if (a.ipv4) {
      await pod.addRoute({ dst: GATEWAY_V4, dev: podLink.index, scope: "link" });
      await pod.addRoute({ dst: "default", family: 4, gateway: GATEWAY_V4, dev: podLink.index });
      await pod.replaceNeighbour({ link: podLink.index, address: GATEWAY_V4, lladdr: hostLink.mac ?? "" });
    }
    if (a.ipv6) {
      await pod.addRoute({ dst: "default", family: 6, gateway: GATEWAY_V6, dev: podLink.index });
      await pod.replaceNeighbour({ link: podLink.index, address: GATEWAY_V6, lladdr: hostLink.mac ?? "" });
    }
  }

  private async configureHost(
    hostLink: Link,
    podLink: Link,
    a: { ipv4?: string; ipv6?: string },
  ): Promise<void> {
    const dev = hostLink.name;
    if (this.opts.bigTcp !== false) await this.applyBigTcp(this.host, hostLink.index);
    // bpf_fib_lookup refuses to route packets arriving on a device with forwarding off; rp_filter
    // must not judge traffic the programs already vetted.
    if (a.ipv4) {
      await sysctlWrite(`net/ipv4/conf/${dev}/forwarding`, 1);
      await sysctlWrite(`net/ipv4/conf/${dev}/rp_filter`, 0);
    }
    await this.host.setLinkUp(hostLink.index);
    if (a.ipv4) {
      await this.host.addRoute({ dst: `${a.ipv4}/32`, dev: hostLink.index, scope: "link" });
      if (this.mode === "veth") {
        await this.host.replaceNeighbour({
          link: hostLink.index,
          address: a.ipv4,
          lladdr: podLink.mac ?? "",
        });
      }
    }
    if (a.ipv6) {
      await this.host.addRoute({ dst: `${a.ipv6}/128`, dev: hostLink.index });
      if (this.mode === "veth") {
        await this.host.replaceNeighbour({
          link: hostLink.index,
          address: a.ipv6,
          lladdr: podLink.mac ?? "",
        });
      }
    }
  }

  private async applyBigTcp(h: Rtnl, ifindex: number): Promise<void> {
    try {
      await h.setOffloadSizes(ifindex, {
        gsoMaxSize: BIG_TCP_SIZE,
        groMaxSize: BIG_TCP_SIZE,
        gsoIpv4MaxSize: BIG_TCP_SIZE,
        groIpv4MaxSize: BIG_TCP_SIZE,
      });
    } catch (e) {
      // Older kernels lack the IPv4 variants; BIG TCP is an optimisation, never a reason to fail.
      this.opts.log?.debug({ err: e, ifindex }, "BIG TCP sizes not accepted");
    }
  }

  private async resolveMtu(): Promise<void> {
    if (this.opts.mtu) {
      this.mtu = this.opts.mtu;
      return;
    }
    const first = this.opts.uplinks?.[0];
    if (first) this.mtu = (await this.host.requireLink(first)).mtu ?? 1500;
  }

  /** Attaches nk_from_uplink to an uplink's tcx ingress (pinned; adopted on restart). */
  async attachUplink(ifName: string): Promise<void> {
    const link = await this.host.requireLink(ifName);
    const dir = this.pins.sub("uplinks").sub(ifName).ensure();
    const pin = dir.path("from-uplink");
    if (this.adoptPinnedLink(pin, this.progs.fromUplink, link.index)) return;
    const l = BpfLink.attachTcx(this.progs.fromUplink, {
      ifindex: link.index,
      direction: "ingress",
      anchor: "first",
    });
    try {
      l.pin(pin);
    } finally {
      l.close();
    }
  }

  detachUplink(ifName: string): boolean {
    return this.pins.sub("uplinks").remove(ifName);
  }

  /**
   * Swaps the program under a pinned link. Returns false when there is no usable link (no pin, or
   * the device is gone): the caller then attaches afresh.
   */
  private adoptPinnedLink(pin: string, prog: BpfProgram, ifindex: number): boolean {
    let link: BpfLink;
    try {
      link = BpfLink.fromPin(pin);
    } catch (e) {
      if (e instanceof NotFoundError) return false;
      throw e;
    }
    try {
      const info = link.info();
      // The kernel reports a netkit peer link's ifindex as the peer's (inside the pod netns), so ask
      // the host device which links it runs instead of comparing ifindexes.
      if (!info.attached || !info.attachPoint || !linkRunsOn(ifindex, info.attachPoint, info.id)) {
        removePin(pin);
        return false;
      }
      link.update(prog);
      return true;
    } finally {
      link.close();
    }
  }

  /** Brings recorded endpoints in line with the kernel after a (re)start. */
  private async reconcile(): Promise<void> {
    const epDir = this.pins.sub("endpoints");
    const recorded = new Set<string>();
    for (const rec of this.store.list()) {
      recorded.add(rec.hostIfName);
      const link = rec.hostIfindex ? await this.host.getLink(rec.hostIfName) : undefined;
      if (rec.phase !== "wired" || !link || link.index !== rec.hostIfindex) {
        // Half-built, or the pod's netns (and with it the pair) is gone.
        this.opts.log?.info({ id: rec.id, dev: rec.hostIfName, phase: rec.phase }, "removing stale endpoint");
        await this.teardown(rec);
        continue;
      }
      if (rec.mode !== this.mode) {
        throw new NkitError(
          "NKIT_INVALID_ARGUMENT",
          `endpoint ${rec.id} was wired in ${rec.mode} mode but the datapath now runs in ${this.mode} mode; ` +
            `set datapath: ${rec.mode} or unwire the existing endpoints first`,
        );
      }
      const dir = epDir.sub(rec.hostIfName);
      const fromOk = this.adoptPinnedLink(
        dir.path(LINK_PINS.from),
        this.progs.fromContainer,
        rec.hostIfindex,
      );
      const toOk = this.adoptPinnedLink(dir.path(LINK_PINS.to), this.progs.toContainer, rec.hostIfindex);
      if (!fromOk || !toOk) {
        dir.removeAll();
        await this.attachEndpointLinks(rec.hostIfName, rec.hostIfindex);
      }
      // Maps are pinned, but restore entries in case they were cleared by hand.
      const value = {
        ifindex: rec.hostIfindex,
        ep_id: rec.epNum,
        flags: rec.mode === "netkit" ? EndpointFlags.NETKIT : EndpointFlags.L2,
        mac: macBytes(await this.podMac(rec)),
        host_mac: macBytes(link.mac),
      };
      this.progs.devices.update(rec.hostIfindex, rec.epNum);
      for (const k of this.endpointKeys(rec.addresses)) this.progs.endpoints.update(k, value);
    }
    // Pins of endpoints nobody records any more.
    for (const name of epDir.exists() ? epDir.list() : []) {
      if (!recorded.has(name)) epDir.remove(name);
    }
  }

  private async podMac(rec: EndpointRecord): Promise<string | undefined> {
    let pod: Rtnl | undefined;
    try {
      pod = await Rtnl.inNetns(rec.netnsPath);
      return (await pod.getLink(rec.podIfName))?.mac;
    } catch {
      return undefined;
    } finally {
      await pod?.close();
    }
  }
}

function linkRunsOn(ifindex: number, point: AttachPoint, linkId: number): boolean {
  try {
    return queryAttached(ifindex, point).programs.some((p) => p.linkId === linkId);
  } catch {
    return false;
  }
}

function resolveMode(setting: DatapathModeSetting, log?: Logger): DatapathMode {
  const tcx = probeTcx();
  const netkit = probeNetkit();
  if (setting === "netkit") {
    if (!netkit.supported) throw new NotSupportedError("datapath: netkit", netkit.need);
    return "netkit";
  }
  if (setting === "auto" && netkit.supported) return "netkit";
  if (!tcx.supported) throw new NotSupportedError("datapath: veth + tcx", tcx.need);
  if (setting === "auto")
    log?.info({ reason: netkit.supported ? "" : netkit.reason }, "netkit unavailable: using veth + tcx");
  return "veth";
}

function validateAddresses(
  id: string,
  a: { ipv4?: string; ipv6?: string },
): { ipv4?: string; ipv6?: string } {
  const out: { ipv4?: string; ipv6?: string } = {};
  if (a.ipv4 !== undefined) {
    if (!isIPv4(a.ipv4))
      throw new InvalidArgumentError(`wire ${id}: ipv4 "${a.ipv4}" is not an IPv4 address`);
    out.ipv4 = a.ipv4;
  }
  if (a.ipv6 !== undefined) {
    if (!isIPv6(a.ipv6))
      throw new InvalidArgumentError(`wire ${id}: ipv6 "${a.ipv6}" is not an IPv6 address`);
    out.ipv6 = a.ipv6;
  }
  return out;
}

function sameInode(path: string, inode: number): boolean {
  try {
    return netnsInode(path) === inode;
  } catch {
    return false;
  }
}

async function rollback(undo: Undo[], log?: Logger): Promise<void> {
  for (const step of undo.reverse()) {
    try {
      await step();
    } catch (e) {
      log?.error({ err: e }, "rollback step failed");
    }
  }
}

/** Adds context while keeping the typed error (and its code) callers match on. */
function wrap(e: unknown, context: string): Error {
  if (e instanceof NkitError) {
    e.message = `${context}: ${e.message}`;
    return e;
  }
  return new NkitError("NKIT_INTERNAL", `${context}: ${e instanceof Error ? e.message : String(e)}`, {
    cause: e,
  });
}
