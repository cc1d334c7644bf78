// Wires network namespaces (pod sandboxes) onto the BPF datapath and takes them off again.
//
// A wiring is transactional: every kernel object is created behind an undo step, and any failure
// rolls back everything before the error reaches the caller. A record with phase "wiring" is
// written before the first object exists, so a crash mid-way is repaired at the next start
// (reconcile.ts). Links and maps are pinned, so a restarted process adopts running endpoints.
//
// The pieces live next door: device configuration (devices.ts), map entries and counters
// (endpoint-maps.ts), program links (links.ts), uplinks (uplinks.ts), mode probing (mode.ts).

import type { DatapathObjectMaps } from "../bpf/gen/datapath.skel.js";
import { PinDir } from "../bpf/pins.js";
import { AlreadyExistsError, ClosedError, InvalidArgumentError, NotFoundError } from "../errors.js";
import { netnsExists, netnsInode, Rtnl, sameNetns } from "../netlink/index.js";
import { KeyedMutex } from "../util/keyed-mutex.js";
import { settleAll } from "../util/settle.js";
import { UndoStack } from "../util/undo-stack.js";
import type { DatapathContext } from "./context.js";
import {
  configurePod,
  createPair,
  type DeviceOptions,
  lowerHost,
  podEndOf,
  prepareHost,
  raiseHost,
  raiseUplinkOffloads,
  resolveBigTcp,
  resolveMtu,
  verifyPodSide,
} from "./devices.js";
import {
  type EndpointManagerOptions,
  newRecord,
  podIfNameOf,
  toWired,
  type WiredEndpoint,
  type WireRequest,
  withContext,
} from "./endpoint.js";
import {
  addressHolder,
  clearEndpointCounters,
  type EndpointCounters,
  endpointKeys,
  endpointValueOf,
  nextEpNum,
  readEndpointCounters,
  removeEndpointEntries,
} from "./endpoint-maps.js";
import { adoptEndpointLinks, attachGatingLinks, endpointProgramsAttached } from "./links.js";
import { resolveMode } from "./mode.js";
import { hostIfName } from "./naming.js";
import { DatapathPrograms } from "./programs.js";
import { reconcile } from "./reconcile.js";
import { type DatapathMode, type EndpointRecord, type EndpointStore, openEndpointStore } from "./store.js";
import { attachUplink, detachUplink, ensureUplink } from "./uplinks.js";

export type { EndpointManagerOptions, WiredEndpoint, WireRequest } from "./endpoint.js";

/** The host devices' netns: a pod needs one of its own. */
const HOST_NETNS = "/proc/self/ns/net";

export interface EndpointRepairs {
  repaired: string[];
  failed: { id: string; error: string }[];
  /** Uplinks that had lost nk_from_uplink (deleted and made again) and got it back. */
  uplinks: string[];
  /** Map pins that were removed and are back (the maps themselves never went). */
  pins: string[];
}

export class EndpointManager {
  private readonly store: EndpointStore;
  private readonly dp: DatapathContext;
  private readonly devices: DeviceOptions;
  private readonly locks = new KeyedMutex();
  private closed = false;
  /** Endpoints whose repair failed, retried every pass until it works or their owner unwires them. */
  private readonly unrepaired = new Map<string, { req: WireRequest; error: string }>();

  private constructor(
    private readonly opts: EndpointManagerOptions,
    readonly mode: DatapathMode,
    private readonly progs: DatapathPrograms,
    private readonly host: Rtnl,
    /** Deletes unwired endpoints' pairs: on a socket of its own, since a socket runs one transaction
     * at a time and a pair's deletion waits ~20 ms in the kernel (outside RTNL), wires go on meanwhile. */
    private readonly reaper: Rtnl,
    mtu: number,
    /** Whether pods get BIG TCP: asked for, and every uplink can carry it (resolveBigTcp). */
    readonly bigTcp: boolean,
  ) {
    this.store = openEndpointStore(opts.stateDir);
    this.dp = { mode, host, progs, pins: new PinDir(opts.bpffsDir), log: opts.log };
    this.devices = { mode, mtu, bigTcp, flowSteering: opts.flowSteering, log: opts.log };
  }

  /**
   * Probes the kernel, loads the programs (reusing pinned maps), adopts the endpoints recorded by a
   * previous process and repairs half-finished ones. An explicit `netkit` mode on a kernel without
   * netkit fails here, once, rather than on every pod.
   */
  static async start(opts: EndpointManagerOptions): Promise<EndpointManager> {
    const mode = resolveMode(opts.mode ?? "auto", opts.log);
    new PinDir(opts.bpffsDir).ensure();
    const progs = DatapathPrograms.load(opts.bpffsDir, opts.objectPath, opts.mapSizes);
    for (const r of progs.resized) {
      opts.log?.warn(
        r,
        `BPF map ${r.name} made anew with ${r.to} entries (was ${r.from}): its entries are gone`,
      );
    }
    let host: Rtnl | undefined;
    let reaper: Rtnl | undefined;
    try {
      host = await Rtnl.host();
      reaper = await Rtnl.host();
      const mtu = await resolveMtu(host, opts.mtu, opts.uplinks);
      const bigTcp = await resolveBigTcp(host, opts.bigTcp, opts.uplinks, opts.log);
      const mgr = new EndpointManager(opts, mode, progs, host, reaper, mtu, bigTcp);
      await reconcile(mgr.dp, mgr.store, (rec) => mgr.teardown(rec));
      // Pods whose host device vanished while nobody ran, their netns alive: wired again.
      await mgr.repair();
      for (const u of opts.uplinks ?? []) await mgr.attachUplink(u);
      return mgr;
    } catch (e) {
      await host?.close();
      await reaper?.close();
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
    await this.reaper.close();
    this.progs.close();
  }

  /**
   * The datapath object's maps, for the owners of the ones it creates but does not write itself:
   * masquerade's settings, the conntrack and the per-packet load-balancer's tables.
   */
  get maps(): DatapathObjectMaps {
    return this.progs.maps;
  }

  list(): WiredEndpoint[] {
    return this.store
      .list()
      .filter((r) => r.phase === "wired")
      .map(toWired);
  }

  get(id: string): WiredEndpoint | undefined {
    const r = this.wiredRecord(id);
    return r ? toWired(r) : undefined;
  }

  private wiredRecord(id: string): EndpointRecord | undefined {
    const r = this.store.get(hostIfName(id));
    return r && r.phase === "wired" && r.id === id ? r : undefined;
  }

  /** Checks the pod side is still what wiring made: the pod (sysctls, CAP_NET_ADMIN) can undo it. */
  async verify(id: string): Promise<string | undefined> {
    const r = this.wiredRecord(id);
    return r ? verifyPodSide(r) : `endpoint ${id} is not wired`;
  }

  /** Replaces a wired endpoint's labels (its identity); returns the endpoint, or undefined if not wired. */
  setLabels(id: string, labels: Record<string, string>): WiredEndpoint | undefined {
    const r = this.wiredRecord(id);
    if (!r) return undefined;
    r.labels = { ...labels };
    this.store.put(r);
    return toWired(r);
  }

  /** Calls listener after every committed change of an endpoint (wiring, wired, labels, removed). */
  onChange(listener: () => void): () => void {
    return this.store.subscribe(listener);
  }

  /** Per-reason packet and byte counters of one endpoint (summed over CPUs). */
  counters(id: string): EndpointCounters {
    const r = this.store.get(hostIfName(id));
    if (!r || r.id !== id) throw new NotFoundError(`endpoint ${id} is not wired`);
    return readEndpointCounters(this.progs, r.epNum);
  }

  /**
   * Wires the endpoint and resolves once the pod may send (its policing program runs); what may
   * finish later (netkit's to-container link) runs after under the endpoint's lock: settled(id).
   */
  wire(req: WireRequest): Promise<WiredEndpoint> {
    if (this.closed) return Promise.reject(new ClosedError("EndpointManager"));
    if (!req.id) return Promise.reject(new InvalidArgumentError("wire: endpoint id must not be empty"));
    return this.answerFirst(req.id, async () => {
      const w = await this.wireLocked(req);
      this.unrepaired.delete(req.id);
      return { answer: w.wired, rest: w.rest };
    });
  }

  /**
   * Takes the endpoint off the datapath and resolves: its host end is down (nothing the pod sends
   * passes), its routes and map entries are gone (its addresses may go to another endpoint). The
   * pair's deletion, which waits for RCU grace periods in the kernel, finishes afterwards under the
   * endpoint's lock: a wire of the same id waits for it, and settled(id) says when it is done.
   */
  unwire(id: string): Promise<boolean> {
    return this.answerFirst(id, async () => {
      this.unrepaired.delete(id);
      const r = await this.unwireLocked(id);
      return { answer: r.existed, rest: r.removal };
    });
  }

  /**
   * Runs op under the endpoint's lock and resolves with its answer as soon as there is one; the
   * `rest` it hands back (kernel work no caller needs to wait for) then runs under the same lock.
   */
  private answerFirst<T>(
    id: string,
    op: () => Promise<{ answer: T; rest?: (() => Promise<void>) | undefined }>,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      void this.locks.run(id, async () => {
        let rest: (() => Promise<void>) | undefined;
        try {
          const r = await op();
          rest = r.rest;
          resolve(r.answer);
        } catch (e) {
          reject(e);
          return;
        }
        await rest?.();
      });
    });
  }

  /** Resolves once every operation queued for the endpoint so far (an unwire's device deletion
   * included) has finished. */
  settled(id: string): Promise<void> {
    return this.locks.run(id, async () => undefined);
  }

  /** Attaches nk_from_uplink to an uplink's tcx ingress (pinned; adopted on restart). */
  attachUplink(ifName: string): Promise<void> {
    return attachUplink(this.dp, ifName);
  }

  detachUplink(ifName: string): boolean {
    return detachUplink(this.dp, ifName);
  }

  /**
   * Wires the endpoint; `rest` is what may finish after the caller has its answer (netkit's
   * to-container link), to run under the endpoint's lock: settled(id) waits for it.
   */
  private async wireLocked(
    req: WireRequest,
  ): Promise<{ wired: WiredEndpoint; rest?: (() => Promise<void>) | undefined }> {
    const ifName = podIfNameOf(req);
    // Throws NetnsError for a missing or non-netns path before anything is created.
    netnsInode(req.netnsPath);
    if (sameNetns(req.netnsPath, HOST_NETNS)) {
      throw new InvalidArgumentError(
        `wire ${req.id}: ${req.netnsPath} is the host's own network namespace; a pod needs its own`,
      );
    }
    const hostName = hostIfName(req.id);
    const existing = this.store.get(hostName);
    if (existing?.phase === "wired") {
      if (existing.id !== req.id) {
        throw new AlreadyExistsError(
          `wire ${req.id}: host device ${hostName} belongs to endpoint ${existing.id}`,
        );
      }
      if (sameNetns(existing.netnsPath, req.netnsPath)) return { wired: toWired(existing) };
      throw new AlreadyExistsError(
        `wire ${req.id}: already wired into ${existing.netnsPath}; unwire it before wiring it into ${req.netnsPath}`,
      );
    }
    if (existing) await this.teardown(existing);
    await this.awaitRemovalsInto(req.netnsPath, ifName);

    const undo = new UndoStack(this.opts.log);
    const record = newRecord(req, {
      epNum: nextEpNum(this.store.peek()),
      mode: this.mode,
      podIfName: ifName,
      hostIfName: hostName,
    });
    this.store.put(record);
    undo.push(() => this.store.delete(hostName));
    const addresses = record.addresses;
    // Refuse an address another endpoint holds before creating anything (the map insert would only
    // say "key exists", after the device was made).
    const clash = addressHolder(this.progs, this.store.peek(), addresses, hostName);
    if (clash) {
      await undo.rollback();
      throw new AlreadyExistsError(
        `wire ${req.id}: address ${clash.address} is already used by ${clash.holder ? `endpoint ${clash.holder}` : "another endpoint"}; unwire it first or pick another address`,
      );
    }
    // The pod's socket opens on a thread while the pair is made.
    const podSocket = Rtnl.inNetns(req.netnsPath);
    podSocket.catch(() => undefined); // awaited below, or closed in finally
    try {
      const pair = await createPair(this.host, this.devices, hostName, ifName, req.netnsPath);
      const hostLink = pair.host;
      undo.push(() => this.host.deleteLink(hostName));
      // Kept in memory only until the record is written wired: a crash before that leaves entries
      // the record cannot name, which the restart's sweep removes (reconcile.ts).
      record.hostIfindex = hostLink.index;

      const pod = await podSocket;
      const podEnd = await podEndOf(pod, this.devices, pair, ifName);

      // Maps and programs first, host device up last: no packet crosses before the datapath is ready.
      const value = endpointValueOf({ ...record, podMac: podEnd.mac, hostMac: hostLink.mac });
      this.progs.devices.update(hostLink.index, record.epNum);
      undo.push(() => this.progs.devices.delete(hostLink.index));
      for (const k of endpointKeys(addresses)) {
        this.progs.endpoints.update(k, value, "noexist");
        undo.push(() => this.progs.endpoints.delete(k));
      }
      undo.push(() => clearEndpointCounters(this.progs, record.epNum));
      undo.push(() => this.dp.pins.sub("endpoints").remove(hostName));
      // Independent of each other, so concurrent; the host end stays down through all of them, and
      // a pod end that is up cannot send through a peer that is down.
      const gating = attachGatingLinks(this.dp, hostName, hostLink.index);
      await settleAll<unknown>([
        gating,
        configurePod(pod, this.devices, podEnd, hostLink, addresses),
        prepareHost(this.devices, hostLink, addresses),
      ]);
      await raiseHost(this.host, this.devices, hostLink, podEnd, addresses);

      record.phase = "wired";
      this.store.put(record);
      this.opts.log?.debug({ id: req.id, dev: hostName, addresses }, "endpoint wired");
      const attachRest = await gating;
      return { wired: toWired(record), rest: attachRest && (() => this.finishWiring(record, attachRest)) };
    } catch (e) {
      // The device goes first: once it is gone no program runs for this endpoint, so no packet can
      // re-create the counter entries the other undo steps remove (the later delete is a no-op).
      if (record.hostIfindex) undo.push(() => this.host.deleteLink(hostName));
      await undo.rollback();
      throw withContext(e, `wiring endpoint ${req.id} (${hostName} <-> ${ifName} in ${req.netnsPath})`);
    } finally {
      await (await podSocket.catch(() => undefined))?.close();
    }
  }

  /** Runs a wiring's deferred attach; a failure leaves the endpoint to the next repair pass. */
  private async finishWiring(rec: EndpointRecord, attach: () => Promise<void>): Promise<void> {
    try {
      await attach();
    } catch (e) {
      this.opts.log?.error(
        { id: rec.id, dev: rec.hostIfName, err: e },
        "attaching an endpoint's to-container program failed: the next repair pass attaches it",
      );
    }
  }

  /**
   * Waits for the pair of an endpoint unwired from this netns under this interface name to be
   * deleted (its pod end would take the name until then): a runtime may DEL one container and ADD
   * another into the same netns at once.
   */
  private async awaitRemovalsInto(netnsPath: string, ifName: string): Promise<void> {
    const leaving = [...this.store.peek()].filter(
      (r) => r.phase === "unwiring" && r.podIfName === ifName && sameNetns(r.netnsPath, netnsPath),
    );
    for (const r of leaving) await this.settled(r.id);
  }

  private async unwireLocked(id: string): Promise<{ existed: boolean; removal?: () => Promise<void> }> {
    const name = hostIfName(id);
    const rec = this.store.get(name);
    if (!rec || rec.id !== id) {
      // Nothing recorded: still remove any device or pins a crashed wiring may have left.
      const dev = await this.host.deleteLink(name);
      const pins = this.dp.pins.sub("endpoints").remove(name);
      return { existed: dev || pins };
    }
    if (rec.phase !== "wired" || !(await lowerHost(this.host, rec))) {
      // Half-built, or its device is gone already: nothing to wait for.
      await this.teardown(rec);
      this.opts.log?.debug({ id, dev: rec.hostIfName }, "endpoint unwired");
      return { existed: true };
    }
    this.dp.pins.sub("endpoints").remove(rec.hostIfName);
    removeEndpointEntries(this.progs, rec);
    rec.phase = "unwiring";
    this.store.put(rec);
    // teardown clears the map entries once more after the device is gone: a packet in flight when
    // the host end went down may have counted on this endpoint number since.
    const removal = async (): Promise<void> => {
      try {
        await this.teardown(rec, this.reaper);
        this.opts.log?.debug({ id, dev: rec.hostIfName }, "endpoint unwired");
      } catch (e) {
        // Off the datapath already; the record stays, so the next start removes the device.
        this.opts.log?.error(
          { id, dev: rec.hostIfName, err: e },
          "deleting an unwired endpoint's device failed",
        );
      }
    };
    return { existed: true, removal };
  }

  /**
   * Wires again every endpoint whose host device is gone (deleted behind nkitd's back, or the pair
   * torn down by hand) while its pod's netns lives on: same id, addresses, interface and labels.
   * Endpoints whose netns is gone too are left to the owner's DEL (or the restart's collection).
   * Returns what was wired again and what could not be.
   */
  async repair(): Promise<EndpointRepairs> {
    const out: EndpointRepairs = { repaired: [], failed: [], uplinks: [], pins: [] };
    if (this.closed) return out;
    try {
      out.pins = this.progs.repinMaps();
      if (out.pins.length > 0) {
        this.opts.log?.warn({ pins: out.pins }, "the datapath's map pins were removed: pinned them again");
      }
    } catch (e) {
      this.opts.log?.error({ err: e }, "pinning the datapath's maps again failed");
    }
    for (const u of this.opts.uplinks ?? []) {
      try {
        if (await ensureUplink(this.dp, u)) {
          out.uplinks.push(u);
          this.opts.log?.warn({ uplink: u }, "an uplink came back without nk_from_uplink: attached it again");
          // A device made again has the kernel's 64 KiB sizes; the pods still send BIG TCP.
          if (this.bigTcp)
            await raiseUplinkOffloads(this.host, await this.host.requireLink(u), this.opts.log);
        }
      } catch (e) {
        // Gone for now (it may come back): nothing runs on a device that is not there.
        if (!(e instanceof NotFoundError))
          this.opts.log?.error({ uplink: u, err: e }, "checking an uplink failed");
      }
    }
    const links = new Map((await this.host.listLinks()).map((l) => [l.name, l.index]));
    const broken: WireRequest[] = [];
    for (const rec of this.store.list()) {
      if (rec.phase !== "wired") continue;
      if (links.get(rec.hostIfName) === rec.hostIfindex) {
        // The device is fine; its programs are gone when someone removed them (tc) or their pins.
        if (!(await endpointProgramsAttached(this.dp, rec.hostIfName, rec.hostIfindex)))
          await this.reattachPrograms(rec, out);
        continue;
      }
      broken.push({
        id: rec.id,
        netnsPath: rec.netnsPath,
        ifName: rec.podIfName,
        addresses: rec.addresses,
        labels: rec.labels,
      });
    }
    // Ones an earlier pass could not wire again are tried again (their record went with the attempt).
    for (const u of this.unrepaired.values()) if (!broken.some((b) => b.id === u.req.id)) broken.push(u.req);
    for (const req of broken) {
      if (!netnsExists(req.netnsPath)) {
        this.unrepaired.delete(req.id);
        continue;
      }
      await this.locks.run(req.id, async () => {
        const now = this.store.get(hostIfName(req.id));
        if (now && now.id === req.id && now.phase === "wired") {
          const link = await this.host.getLink(now.hostIfName);
          if (link && link.index === now.hostIfindex) return;
        } else if (!this.unrepaired.has(req.id)) {
          return; // unwired meanwhile by its owner
        }
        try {
          if (now) await this.teardown(now);
          await (await this.wireLocked(req)).rest?.();
          out.repaired.push(req.id);
          this.unrepaired.delete(req.id);
          this.opts.log?.warn(
            { id: req.id, dev: hostIfName(req.id), addresses: req.addresses },
            "an endpoint's host device was gone: wired it again",
          );
        } catch (e) {
          const error = (e as Error).message;
          out.failed.push({ id: req.id, error });
          if (this.unrepaired.get(req.id)?.error !== error) {
            this.opts.log?.error(
              { id: req.id, err: e },
              "an endpoint's host device is gone and wiring it again failed",
            );
          }
          this.unrepaired.set(req.id, { req, error });
        }
      });
    }
    return out;
  }

  /** Attaches an endpoint's programs again (removed by hand, or their pins were). */
  private async reattachPrograms(rec: EndpointRecord, out: EndpointRepairs): Promise<void> {
    await this.locks.run(rec.id, async () => {
      if (this.store.get(rec.hostIfName)?.id !== rec.id) return;
      try {
        if (await endpointProgramsAttached(this.dp, rec.hostIfName, rec.hostIfindex)) return;
        await adoptEndpointLinks(this.dp, rec.hostIfName, rec.hostIfindex);
        out.repaired.push(rec.id);
        this.opts.log?.warn(
          { id: rec.id, dev: rec.hostIfName },
          "an endpoint's programs were gone: attached them again",
        );
      } catch (e) {
        this.opts.log?.error({ id: rec.id, err: e }, "attaching an endpoint's programs again failed");
      }
    });
  }

  /** Endpoints the last repair() found broken and could not wire again (`nkit status`, `nkit doctor`). */
  problems(): EndpointRepairs["failed"] {
    return [...this.unrepaired.values()].map((u) => ({ id: u.req.id, error: u.error }));
  }

  /** Removes everything an endpoint record stands for; safe on partial wirings and repeats. */
  private async teardown(rec: EndpointRecord, via: Rtnl = this.host): Promise<void> {
    // Device first: after that no program runs on its hooks (links detach asynchronously once
    // unpinned), so nothing re-creates counters or hits the unknown-source path after the maps
    // were cleaned below. Deleting the host side also removes the pod side, its routes and neighbours.
    await via.deleteLink(rec.hostIfName);
    this.dp.pins.sub("endpoints").remove(rec.hostIfName);
    removeEndpointEntries(this.progs, rec);
    this.store.delete(rec.hostIfName);
  }
}
