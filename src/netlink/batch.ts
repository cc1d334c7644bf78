// Several rtnetlink changes in one sendmsg: one round trip through the addon's thread pool and one
// wake-up of the kernel's netlink receive path instead of one per change. Wiring a pod makes about a
// dozen changes; as single requests each cost a thread-pool hop (~0.3 ms here), batched they cost one.
//
// The kernel runs every message of a batch whatever became of the ones before it, so a batch holds
// only changes that are safe in any outcome of their predecessors: a caller that must not raise a
// device before its programs are attached commits the attach first and the "up" in a later batch.
import { type AddressSpec, addAddressRequest } from "./addresses.js";
import { type LinkUpdate, updateLinkRequest } from "./links.js";
import { addNeighbourRequest, type NeighbourSpec } from "./neighbours.js";
import { deleteRouteRequest, type RouteSpec, routeRequest } from "./routes.js";
import type { NlRequest, RtnlSocket } from "./socket.js";
import { attachTcBpfRequest, clsactRequest, type TcBpfAttach } from "./tc.js";

/** A change the batch was told it may do without: what it was and why the kernel refused it. */
export interface SkippedChange {
  operation: string;
  error: unknown;
}

export class RtnlBatch {
  private readonly queued: { request: NlRequest; optional: boolean }[] = [];

  constructor(private readonly sock: RtnlSocket) {}

  get size(): number {
    return this.queued.length;
  }

  /** Queues a change to a link (by index, or by name when it is not renamed). With optional, a
   * refusal is reported by commit() instead of failing it (e.g. sizes an older kernel lacks). */
  updateLink(ref: number | string, u: LinkUpdate, o: { optional?: boolean } = {}): this {
    if (u.netnsPath !== undefined || (typeof ref === "string" && u.name !== undefined))
      throw new TypeError("a batched link update cannot move or rename a link named by name");
    return this.push(updateLinkRequest(ref, u, undefined, ref, this.sock.where), o.optional);
  }

  addAddress(spec: AddressSpec & { link: number }): this {
    return this.push(addAddressRequest(spec.link, spec, false));
  }

  addRoute(spec: RouteSpec & { dev?: number }): this {
    return this.push(routeRequest(spec, spec.dev, false));
  }

  /** Deletes the route if it is there. */
  deleteRoute(spec: RouteSpec & { dev?: number }): this {
    return this.push(deleteRouteRequest(spec, spec.dev));
  }

  replaceNeighbour(spec: NeighbourSpec & { link: number }): this {
    return this.push(addNeighbourRequest(spec.link, spec, true));
  }

  ensureClsact(ifindex: number): this {
    return this.push(clsactRequest(ifindex));
  }

  attachTcBpf(o: TcBpfAttach): this {
    return this.push(attachTcBpfRequest(o));
  }

  /**
   * Sends every queued change in one transaction and empties the batch. Throws the first failure
   * in queue order of a change that was not optional; resolves with the optional ones refused.
   */
  async commit(): Promise<SkippedChange[]> {
    const queued = this.queued.splice(0);
    if (queued.length === 0) return [];
    const settled = await this.sock.settleAll(queued.map((q) => q.request));
    const skipped: SkippedChange[] = [];
    for (const [i, s] of settled.entries()) {
      if (s.ok) continue;
      const q = queued[i]!;
      if (!q.optional) throw s.error;
      skipped.push({ operation: q.request.operation, error: s.error });
    }
    return skipped;
  }

  private push(request: NlRequest, optional = false): this {
    this.queued.push({ request, optional });
    return this;
  }
}
