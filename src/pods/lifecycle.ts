// The one owner of a container's address reservation and of the CRI pod flow, and the one way in for
// every endpoint: nkitd's front doors, the admin API, the demo, the benchmarks. The CNI door (src/cni) reserves at ADD (owner "cri" for CRI sandboxes in
// "ipam" mode, "cni" for containers it wires itself), pre-wires CRI sandboxes, and releases at DEL
// and on a failed first ADD. The NRI door (src/daemon/nri.ts) wires the sandbox at RunPodSandbox
// with the reserved addresses, unwires at StopPodSandbox and releases at RemovePodSandbox;
// Synchronize (every NRI (re)connect) wires running pods that lack wiring and collects everything
// of CRI pods that no longer exist. Whoever wires a network namespace directly (wire-mode CNI, the
// admin API) admits it: reserve, wire, and undo the reservation when the wiring fails.
import type { EndpointManager, WiredEndpoint } from "../datapath/endpoint-manager.js";
import { InvalidArgumentError } from "../errors.js";
import { type AddressRequest, type Allocation, addressesOf, type Ipam, IpamOwner } from "../ipam/ipam.js";
import type { Logger } from "../log.js";

/** The part of the EndpointManager the pod flow uses. */
type PodDatapath = Pick<EndpointManager, "wire" | "unwire" | "get" | "verify" | "setLabels">;

/** What a reservation is for: a CRI sandbox (wired at NRI RUN) or a container nkit-cni wires. */
type ReservationOwner = (typeof IpamOwner)[keyof typeof IpamOwner];

export interface PodSandbox {
  id: string;
  name: string;
  namespace: string;
  uid: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /** Path of the sandbox's network namespace; absent on some STOP/REMOVE events. */
  netnsPath?: string | undefined;
}

/** A network namespace to admit: its addresses come from IPAM (the requested ones when given). */
export interface AdmitRequest {
  id: string;
  netnsPath: string;
  /** Interface name inside the netns; default eth0. */
  ifName?: string;
  /** Specific addresses to reserve; families left out get the next free one of their pod CIDR. */
  addresses?: Omit<AddressRequest, "owner">;
  labels?: Record<string, string>;
}

interface SyncResult {
  wired: string[];
  collected: string[];
  failed: { id: string; error: string }[];
}

/** IPAM owner tag of CRI pods; endpoints wired by nkit-cni in "wire" mode (nerdctl, Nomad) carry
 * another owner and are never collected by an NRI Synchronize, which only lists CRI sandboxes. */
const CRI_OWNER = IpamOwner.CRI;

/** Reservations younger than this are never collected: their pod may be between CNI ADD and RUN. */
const RESERVATION_GRACE_MS = 120_000;

export class PodLifecycle {
  /** Wirings started at CNI ADD, by sandbox id; RUN and DEL wait for them. */
  private readonly prewires = new Map<string, Promise<void>>();
  /** Told after a container's reservation is gone, whoever released it (DEL, REMOVE, Synchronize). */
  private readonly releasedListeners = new Set<(id: string) => void>();

  constructor(
    private readonly endpoints: PodDatapath,
    private readonly ipam: Ipam,
    private readonly log?: Logger,
    private readonly reservationGraceMs = RESERVATION_GRACE_MS,
  ) {}

  /**
   * CNI ADD: the container's addresses, allocated once per id (a repeated ADD gets the same ones;
   * a request contradicting them is refused). CRI sandboxes by default.
   */
  reserve(
    id: string,
    request: Omit<AddressRequest, "owner"> = {},
    owner: ReservationOwner = CRI_OWNER,
  ): Allocation {
    return this.ipam.allocate(id, { ...request, owner });
  }

  /**
   * Reserves the addresses and wires the netns, in one step with one undo: a wiring that fails
   * releases a reservation this call made (one an earlier ADD made stays). Idempotent like wire().
   */
  async admit(req: AdmitRequest, owner: ReservationOwner = IpamOwner.API): Promise<WiredEndpoint> {
    const fresh = this.ipam.get(req.id) === undefined;
    const addresses = addressesOf(this.reserve(req.id, req.addresses ?? {}, owner));
    try {
      return await this.endpoints.wire({
        id: req.id,
        netnsPath: req.netnsPath,
        ...(req.ifName === undefined ? {} : { ifName: req.ifName }),
        addresses,
        labels: req.labels ?? {},
      });
    } catch (e) {
      if (fresh) this.ipam.release(req.id);
      throw e;
    }
  }

  /**
   * The admin API's unwire: an endpoint it admitted goes with its addresses; a CRI or CNI
   * container's endpoint is unwired and keeps its reservation, which its own door releases.
   */
  async evict(id: string): Promise<boolean> {
    const owner = this.ipam.get(id)?.owner;
    if (owner === IpamOwner.API) return this.release(id);
    await this.settle(id);
    return this.endpoints.unwire(id);
  }

  /**
   * Admissions a crash cut short (a reservation of the admin API's without its endpoint): released
   * at start, before any door opens, so nothing is in flight.
   */
  async collectOrphans(): Promise<string[]> {
    const orphans = this.ipam
      .list()
      .filter((a) => a.owner === IpamOwner.API && !this.endpoints.get(a.id))
      .map((a) => a.id);
    for (const id of orphans) await this.release(id);
    if (orphans.length > 0) this.log?.warn({ ids: orphans }, "released reservations of unfinished wirings");
    return orphans;
  }

  /** The container's reservation, if it holds one. */
  reservation(id: string): Allocation | undefined {
    return this.ipam.get(id);
  }

  /**
   * CNI ADD in ipam mode: starts wiring right away. containerd creates the sandbox container
   * between its CNI step and NRI RunPodSandbox, so the wiring overlaps that work instead of adding
   * to it, and RUN (serialized node-wide by NRI) only waits for what is left and applies the pod's
   * labels. A failure here is not final: RUN wires again and fails the pod if that fails too.
   */
  prewire(req: {
    id: string;
    netnsPath: string;
    ifName: string;
    addresses: { ipv4?: string; ipv6?: string };
    labels: Record<string, string>;
  }): void {
    if (this.prewires.has(req.id) || this.endpoints.get(req.id)) return;
    const p = this.endpoints
      .wire({
        id: req.id,
        netnsPath: req.netnsPath,
        ifName: req.ifName,
        addresses: req.addresses,
        labels: req.labels,
      })
      .then(
        () => undefined,
        (e: unknown) => {
          this.log?.warn({ err: e, pod: req.id }, "wiring at CNI ADD failed; NRI RUN will retry");
        },
      )
      .finally(() => {
        if (this.prewires.get(req.id) === p) this.prewires.delete(req.id);
      });
    this.prewires.set(req.id, p);
  }

  /** Resolves once a wiring started at CNI ADD for id has finished (successfully or not). */
  async settle(id: string): Promise<void> {
    await this.prewires.get(id);
  }

  /**
   * CNI DEL, NRI RemovePodSandbox, a failed first CNI ADD, Synchronize's collection: waits for a
   * pre-wiring, unwires (which also clears what a crashed wiring left: a device without a record)
   * and frees the addresses. Idempotent: says whether there was anything to release.
   */
  async release(id: string): Promise<boolean> {
    await this.settle(id);
    const unwired = await this.endpoints.unwire(id);
    const freed = this.ipam.release(id) !== undefined;
    for (const l of this.releasedListeners) {
      try {
        l(id);
      } catch (e) {
        this.log?.error({ err: e, id }, "releasing what the container held");
      }
    }
    return unwired || freed;
  }

  /**
   * Calls `listener` after every release, so what else a container holds (host ports, its CNI
   * attachment) goes with its addresses, also when Synchronize collects a pod whose DEL never came.
   * Returns the unsubscribe function.
   */
  onReleased(listener: (id: string) => void): () => void {
    this.releasedListeners.add(listener);
    return () => this.releasedListeners.delete(listener);
  }

  /**
   * NRI RunPodSandbox. A pod without a reservation did not go through our CNI and is left alone.
   * Throwing fails the pod, which is what we want when its network cannot be built.
   */
  async run(pod: PodSandbox): Promise<WiredEndpoint | undefined> {
    const reservation = this.ipam.get(pod.id);
    if (!reservation) {
      this.log?.debug({ pod: pod.id, name: pod.name }, "pod has no nkit reservation: not ours");
      return undefined;
    }
    if (!pod.netnsPath) {
      throw new InvalidArgumentError(
        `pod ${pod.namespace}/${pod.name} (${pod.id}) has no network namespace path`,
      );
    }
    await this.settle(pod.id);
    // The sandbox was set up (sysctls and all) after CNI ADD pre-wired it: make sure nothing undid
    // the wiring; if something did, build it again, so a pod that cannot have its network fails.
    if (this.endpoints.get(pod.id)) {
      const problem = await this.endpoints.verify(pod.id);
      if (problem) {
        this.log?.warn({ pod: pod.id, problem }, "pre-wired endpoint changed before RUN: wiring again");
        await this.endpoints.unwire(pod.id);
      }
    }
    const addresses = addressesOf(reservation);
    const labels = podLabels(pod);
    // Idempotent: returns the wiring CNI ADD started when it is there, builds it otherwise.
    const ep = await this.endpoints.wire({ id: pod.id, netnsPath: pod.netnsPath, addresses, labels });
    return this.endpoints.setLabels(pod.id, labels) ?? ep;
  }

  /** NRI StopPodSandbox: the sandbox's network goes; the reservation stays until REMOVE. */
  async stop(pod: Pick<PodSandbox, "id">): Promise<void> {
    await this.endpoints.unwire(pod.id);
  }

  /** NRI RemovePodSandbox. */
  async remove(pod: Pick<PodSandbox, "id">): Promise<void> {
    await this.release(pod.id);
  }

  /** NRI Synchronize: `pods` is every sandbox the runtime knows. */
  async synchronize(pods: readonly PodSandbox[]): Promise<SyncResult> {
    const result: SyncResult = { wired: [], collected: [], failed: [] };
    const known = new Set(pods.map((p) => p.id));
    for (const pod of pods) {
      if (!pod.netnsPath || this.endpoints.get(pod.id) || !this.ipam.get(pod.id)) continue;
      try {
        await this.run(pod);
        result.wired.push(pod.id);
      } catch (e) {
        result.failed.push({ id: pod.id, error: (e as Error).message });
      }
    }
    const now = Date.now();
    const stale = new Set<string>();
    for (const a of this.ipam.list()) {
      if (a.owner !== CRI_OWNER) continue;
      // The reservation's age comes from IPAM itself, so it counts whoever made it (nkit-cni's
      // ADD, typically) and survives an nkitd restart.
      const at = a.createdAt;
      if (!known.has(a.id) && (at === undefined || now - at > this.reservationGraceMs)) stale.add(a.id);
    }
    for (const id of stale) {
      try {
        await this.release(id);
        result.collected.push(id);
      } catch (e) {
        result.failed.push({ id, error: (e as Error).message });
      }
    }
    this.log?.info(
      {
        pods: pods.length,
        wired: result.wired.length,
        collected: result.collected.length,
        failed: result.failed,
      },
      "synchronized with the runtime",
    );
    return result;
  }
}

/** Endpoint identity: the pod's labels plus where it came from. */
function podLabels(pod: PodSandbox): Record<string, string> {
  return {
    ...pod.labels,
    "nkit.io/pod-name": pod.name,
    "nkit.io/pod-namespace": pod.namespace,
    "nkit.io/pod-uid": pod.uid,
  };
}
