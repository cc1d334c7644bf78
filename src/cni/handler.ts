// What nkitd does for each CNI command. The server (server.ts) only frames and dispatches; a
// CniHandler supplies the behaviour. NkitCniHandler implements both conflist modes on top of the
// EndpointManager and the IPAM:
//
//   ipam  ADD   reserve the addresses (keyed by container id = CRI sandbox id), report them and
//               start pre-wiring; the NRI RunPodSandbox hook completes the wiring with exactly these
//               addresses.
//   wire  ADD   reserve, then EndpointManager.wire() the netns (nerdctl, Nomad: no NRI).
//   both  DEL   release (unwire whatever endpoint carries the container id, in ipam mode the one the
//               NRI hook made, and free its addresses), forget. Idempotent; a DEL for an interface or
//               network nkit did not attach is a no-op.
//         CHECK the attachment, the reservation and prevResult agree; in wire mode also the endpoint
//               is wired into this netns and both devices are up.
//         STATUS ok while the datapath is ready.
//         GC    remove every attachment of this network not in cni.dev/valid-attachments. Only what
//               nkit-cni attached is considered: endpoints of the NRI hook or the API are never touched.
//
// Reservations belong to the PodLifecycle (src/pods), which the NRI door shares: this handler never
// allocates or frees addresses itself.
//
// One interface per container: a second ADD for the same container with another CNI_IFNAME or
// network is refused (105); the same ADD repeated is answered with the same result.

import { GATEWAY_V4, GATEWAY_V6 } from "../datapath/devices.js";
import type { EndpointManager, WiredEndpoint } from "../datapath/endpoint-manager.js";
import { addressesOf, IpamOwner } from "../ipam/ipam.js";
import type { Logger } from "../log.js";
import { Rtnl, sameNetns } from "../netlink/index.js";
import type { PodLifecycle } from "../pods/lifecycle.js";
import { IpAddress } from "../util/ip.js";
import { KeyedMutex } from "../util/keyed-mutex.js";
import type { AttachmentStore } from "./attachments.js";
import { CniCode, CniError } from "./codes.js";
import type { CniMode, CniRequest, PortMapping } from "./protocol.js";
import { type BuildResultOptions, buildResult, type CniResult, resultAddresses } from "./result.js";

export interface CniHandler {
  add(req: CniRequest): Promise<CniResult>;
  del(req: CniRequest): Promise<void>;
  check(req: CniRequest): Promise<void>;
  status(req: CniRequest): Promise<void>;
  gc(req: CniRequest): Promise<void>;
}

/** The part of the EndpointManager the handler uses. */
export type EndpointDatapath = Pick<EndpointManager, "mode" | "wire" | "unwire" | "get" | "setLabels">;

/** The pod's gateways in veth mode (fixed link-local, answered by a static neighbour). */
const VETH_GATEWAYS = { ipv4: GATEWAY_V4, ipv6: GATEWAY_V6 } as const;

/** Where portMappings go (the service manager's host ports); claim is all-or-nothing. */
export interface HostPortClaims {
  claim(containerId: string, mappings: readonly PortMapping[], pod: Addresses): void;
  release(containerId: string): void;
}

export interface NkitCniHandlerOptions {
  endpoints: EndpointDatapath;
  /** Absent: portMappings are recorded but not programmed (no service load-balancer). */
  hostPorts?: HostPortClaims;
  /** The reservations and the CRI pod flow (shared with the NRI door). */
  pods: CniPodLifecycle;
  attachments: AttachmentStore;
  log?: Logger;
  /** Why nkitd cannot serve ADD right now, or undefined when it can (STATUS). */
  notReady?: () => string | undefined;
  /** Whether nkitd's NRI plugin completes CRI sandboxes (default true); without it they are wired at ADD. */
  nri?: boolean;
  /** Checks the devices of a wired endpoint; returns the problem or undefined (default: netlink). */
  probeLinks?: (ep: WiredEndpoint) => Promise<string | undefined>;
  /**
   * The runtime's labels of a container wired at ADD (its name, the user's labels), looked up after
   * the wiring and added to the endpoint's; undefined when the runtime does not know the container.
   */
  identity?: (
    containerId: string,
    args: Readonly<Record<string, string>>,
  ) => Promise<Record<string, string> | undefined>;
  /** Times a wiring or unwiring this door does (nkitd: the wiring histogram the other doors feed). */
  timeWiring?: <T>(op: "wire" | "unwire", fn: () => Promise<T>) => Promise<T>;
}

/** What the CNI door asks of the pod lifecycle. */
export type CniPodLifecycle = Pick<
  PodLifecycle,
  "admit" | "reserve" | "reservation" | "prewire" | "release" | "onReleased"
>;

type Addresses = { ipv4?: string; ipv6?: string };

/** prevResult may carry anything: text that is no address compares as itself. */
const canonicalIp = (text: string): string => IpAddress.tryParse(text)?.text ?? text;

/** Host device and pod interface exist and are up. */
export async function probeEndpointLinks(ep: WiredEndpoint): Promise<string | undefined> {
  const host = await Rtnl.host();
  try {
    const l = await host.getLink(ep.hostIfName);
    if (!l) return `host device ${ep.hostIfName} does not exist`;
    if (!l.up) return `host device ${ep.hostIfName} is down`;
  } finally {
    await host.close();
  }
  let pod: Rtnl;
  try {
    pod = await Rtnl.inNetns(ep.netnsPath);
  } catch (e) {
    return `network namespace ${ep.netnsPath} cannot be entered: ${(e as Error).message}`;
  }
  try {
    const l = await pod.getLink(ep.podIfName);
    if (!l) return `${ep.podIfName} does not exist in ${ep.netnsPath}`;
    if (!l.up) return `${ep.podIfName} in ${ep.netnsPath} is down`;
  } finally {
    await pod.close();
  }
  return undefined;
}

export class NkitCniHandler implements CniHandler {
  private readonly locks = new KeyedMutex();

  constructor(private readonly opts: NkitCniHandlerOptions) {
    // Whoever releases a container (CNI DEL or GC here, NRI REMOVE, Synchronize collecting a pod
    // whose DEL never came), its host ports and its attachment go with its addresses.
    opts.pods.onReleased((id) => {
      opts.hostPorts?.release(id);
      opts.attachments.delete(id);
    });
  }

  private timed<T>(op: "wire" | "unwire", fn: () => Promise<T>): Promise<T> {
    return this.opts.timeWiring ? this.opts.timeWiring(op, fn) : fn();
  }

  private exclusive<T>(id: string, fn: () => Promise<T>): Promise<T> {
    return this.locks.run(id, fn);
  }

  add(req: CniRequest): Promise<CniResult> {
    return this.exclusive(req.containerId, () => this.addLocked(req));
  }

  del(req: CniRequest): Promise<void> {
    return this.exclusive(req.containerId, () => this.delLocked(req));
  }

  check(req: CniRequest): Promise<void> {
    return this.exclusive(req.containerId, () => this.checkLocked(req));
  }

  async status(_req: CniRequest): Promise<void> {
    const why = this.opts.notReady?.();
    if (why !== undefined) {
      throw new CniError(CniCode.STATUS_UNAVAILABLE, `nkitd cannot set up containers now: ${why}`);
    }
  }

  async gc(req: CniRequest): Promise<void> {
    const conf = req.config;
    const keep = new Set((conf.validAttachments ?? []).map((a) => `${a.containerID}\0${a.ifname}`));
    const failed: string[] = [];
    let removed = 0;
    for (const att of this.opts.attachments.list()) {
      if (att.network !== conf.name || keep.has(`${att.containerId}\0${att.ifName}`)) continue;
      try {
        const done = await this.exclusive(att.containerId, async () => {
          // Re-read under the lock: a concurrent DEL or a fresh ADD may have changed it.
          const cur = this.opts.attachments.get(att.containerId);
          if (!cur || cur.createdAt !== att.createdAt || cur.ifName !== att.ifName) return false;
          await this.remove(cur.containerId);
          return true;
        });
        if (done) removed++;
      } catch (e) {
        failed.push(`${att.containerId}/${att.ifName}: ${(e as Error).message}`);
      }
    }
    this.opts.log?.info({ network: conf.name, removed, failed: failed.length }, "CNI GC");
    if (failed.length > 0) {
      throw new CniError(
        CniCode.INTERNAL,
        `GC could not remove ${failed.length} attachment(s) of network ${conf.name}`,
        failed.join("; "),
      );
    }
  }

  /**
   * The flow for this container: CRI sandboxes (the runtime names the pod in K8S_POD_* CNI args) are
   * completed by the NRI plugin when it runs; every other caller, and CRI pods on an nkitd without
   * NRI, are wired at ADD, so no container is left with addresses but no network.
   */
  private flowOf(req: CniRequest): CniMode {
    const mode = req.config.mode;
    if (mode !== "auto") return mode;
    const cri = req.argLabels.K8S_POD_NAME !== undefined && req.argLabels.K8S_POD_NAMESPACE !== undefined;
    return cri && this.opts.nri !== false ? "ipam" : "wire";
  }

  private async addLocked(req: CniRequest): Promise<CniResult> {
    const conf = { ...req.config, mode: this.flowOf(req) };
    const id = req.containerId;
    const att = this.opts.attachments.get(id);
    if (att) {
      if (att.ifName !== req.ifName || att.network !== conf.name || att.mode !== conf.mode) {
        throw new CniError(
          CniCode.ATTACHMENT_CONFLICT,
          `container ${id} is already attached as ${att.ifName} to network ${att.network} (mode ${att.mode})`,
          `nkit gives a container one interface; DEL it before adding ${req.ifName} to network ${conf.name} (mode ${conf.mode})`,
        );
      }
      if (!sameNetns(att.netns, req.netns)) {
        throw new CniError(
          CniCode.ATTACHMENT_CONFLICT,
          `container ${id} is already attached in network namespace ${att.netns}`,
          `DEL it before adding it in ${req.netns}`,
        );
      }
    }
    const hadReservation = this.opts.pods.reservation(id) !== undefined;
    // ipam mode serves CRI pods (wired later at NRI RUN, collected by NRI Synchronize); wire mode
    // serves runtimes without NRI, whose endpoints no NRI Synchronize may touch. A wire-mode
    // admission that fails undoes its own reservation.
    let ep: WiredEndpoint | undefined;
    let addresses: Addresses;
    if (conf.mode === "wire") {
      ep = await this.timed("wire", () =>
        this.opts.pods.admit(
          {
            id,
            netnsPath: req.netns,
            ifName: req.ifName,
            addresses: conf.requestedIps,
            labels: { ...req.argLabels, ...conf.labels },
          },
          IpamOwner.CNI,
        ),
      );
      addresses = ep.addresses;
    } else {
      addresses = addressesOf(this.opts.pods.reserve(id, conf.requestedIps, IpamOwner.CRI));
    }
    try {
      if (!att && conf.portMappings.length > 0) this.opts.hostPorts?.claim(id, conf.portMappings, addresses);
      if (!att) {
        this.opts.attachments.put({
          containerId: id,
          ifName: req.ifName,
          network: conf.name,
          mode: conf.mode,
          netns: req.netns,
          addresses,
          portMappings: conf.portMappings,
          createdAt: new Date().toISOString(),
        });
      }
    } catch (e) {
      if (!att) {
        // Leave nothing of a failed first ADD behind (a repeated ADD keeps what the first made).
        this.opts.hostPorts?.release(id);
        // A reservation made before this ADD (and whatever NRI wired with it) is not ours to undo.
        const undo = hadReservation ? ep && this.opts.endpoints.unwire(id) : this.opts.pods.release(id);
        await undo?.catch((u: unknown) => this.opts.log?.error({ err: u, id }, "undo CNI ADD"));
      }
      throw e;
    }
    if (ep && !att) this.applyIdentity(id, req.argLabels);
    if (conf.mode === "ipam" && !att) {
      this.opts.pods.prewire({
        id,
        netnsPath: req.netns,
        ifName: req.ifName,
        addresses,
        labels: { ...req.argLabels, ...conf.labels },
      });
    }
    const opts: BuildResultOptions = {
      cniVersion: conf.cniVersion,
      podInterface: { name: req.ifName, sandbox: req.netns },
      addresses,
    };
    if (ep) opts.hostInterface = { name: ep.hostIfName };
    if (this.opts.endpoints.mode === "veth") opts.gateways = { ...VETH_GATEWAYS };
    if (conf.prevResult) opts.prevResult = conf.prevResult;
    this.opts.log?.debug({ id, mode: conf.mode, addresses }, "CNI ADD");
    return buildResult(opts);
  }

  /**
   * Adds the runtime's labels to a freshly wired endpoint. ADD does not wait for them: a missing or
   * slow containerd costs the endpoint its name and labels, never its network.
   */
  private applyIdentity(id: string, args: Readonly<Record<string, string>>): void {
    const lookup = this.opts.identity;
    if (!lookup) return;
    lookup(id, args).then(
      (labels) => {
        const ep = labels && this.opts.endpoints.get(id);
        if (ep) this.opts.endpoints.setLabels(id, { ...ep.labels, ...labels });
      },
      (e: unknown) =>
        this.opts.log?.warn(
          { err: e, id },
          "container labels unavailable; the endpoint keeps its CNI labels",
        ),
    );
  }

  private async delLocked(req: CniRequest): Promise<void> {
    const id = req.containerId;
    const att = this.opts.attachments.get(id);
    if (att && (att.ifName !== req.ifName || att.network !== req.config.name)) {
      this.opts.log?.debug(
        { id, ifName: req.ifName, network: req.config.name, attached: `${att.network}/${att.ifName}` },
        "CNI DEL for an attachment nkit did not make: nothing to do",
      );
      return;
    }
    await this.remove(id);
  }

  /** Releases (unwires, frees the addresses; the release listener drops ports and attachment); safe to repeat. */
  private async remove(id: string): Promise<void> {
    const release = () => this.opts.pods.release(id);
    // Only an unwiring is timed as one: an ipam-mode DEL before NRI wired anything is a release.
    if (this.opts.endpoints.get(id)) await this.timed("unwire", release);
    else await release();
    this.opts.log?.debug({ id }, "CNI attachment removed");
  }

  private async checkLocked(req: CniRequest): Promise<void> {
    const conf = req.config;
    const id = req.containerId;
    const att = this.opts.attachments.get(id);
    if (!att || att.ifName !== req.ifName || att.network !== conf.name) {
      throw new CniError(
        CniCode.UNKNOWN_CONTAINER,
        `container ${id} has no nkit attachment ${req.ifName} on network ${conf.name}`,
        att ? `it is attached as ${att.ifName} on network ${att.network}` : "",
      );
    }
    const mismatch = (msg: string, details = "") =>
      new CniError(CniCode.CHECK_MISMATCH, `CHECK ${id}/${req.ifName}: ${msg}`, details);
    const alloc = this.opts.pods.reservation(id);
    if (!alloc) throw mismatch("nkitd holds no address reservation for it");
    const reported = new Set(
      resultAddresses(conf.prevResult ?? { cniVersion: conf.cniVersion }).map(canonicalIp),
    );
    for (const ip of [alloc.ipv4, alloc.ipv6]) {
      if (ip !== undefined && !reported.has(canonicalIp(ip))) {
        throw mismatch(
          `prevResult does not carry its address ${ip}`,
          `prevResult ips: ${[...reported].join(", ")}`,
        );
      }
    }
    if (att.mode !== "wire") return;
    const ep = this.opts.endpoints.get(id);
    if (!ep) throw mismatch("the endpoint is not wired");
    if (!sameNetns(ep.netnsPath, req.netns)) {
      throw mismatch(`the endpoint is wired into ${ep.netnsPath}, not ${req.netns}`);
    }
    if (ep.podIfName !== req.ifName) throw mismatch(`the endpoint's pod interface is ${ep.podIfName}`);
    if (ep.addresses.ipv4 !== alloc.ipv4 || ep.addresses.ipv6 !== alloc.ipv6) {
      throw mismatch(
        "the endpoint's addresses differ from the reservation",
        `endpoint ${JSON.stringify(ep.addresses)}, reservation ${JSON.stringify(alloc)}`,
      );
    }
    const problem = await (this.opts.probeLinks ?? probeEndpointLinks)(ep);
    if (problem) throw mismatch(problem);
  }
}
