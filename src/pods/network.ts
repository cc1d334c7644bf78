// A host's pod network assembled in one place: the IPAM, the datapath and the pod lifecycle that is
// the only way an endpoint gets wired. nkitd builds its own with this, and so does everything else
// that needs a datapath of its own (the demo, the benchmarks, the tests), so none of them wires a
// pod differently from what nkitd does.
import { join } from "node:path";
import { EndpointManager, type EndpointManagerOptions } from "../datapath/endpoint-manager.js";
import { Ipam } from "../ipam/ipam.js";
import { PodLifecycle } from "./lifecycle.js";

export interface PodNetworkOptions extends EndpointManagerOptions {
  /** At most one CIDR per family. */
  podCIDRs: readonly string[];
  /** IPAM state directory; default <stateDir>/ipam (an `ipam.json` beside it is moved in). */
  ipamDir?: string;
  /** Age below which NRI Synchronize spares a CRI reservation without a sandbox (default 2 min). */
  reservationGraceMs?: number;
}

export class PodNetwork {
  private constructor(
    readonly ipam: Ipam,
    readonly endpoints: EndpointManager,
    readonly pods: PodLifecycle,
  ) {}

  /**
   * Opens the IPAM state, starts the datapath (adopting and repairing the endpoints a previous
   * process left) and releases the reservations of wirings a crash cut short.
   */
  static async open(opts: PodNetworkOptions): Promise<PodNetwork> {
    const { podCIDRs, ipamDir, reservationGraceMs, ...datapath } = opts;
    const ipam = Ipam.open({
      podCIDRs,
      stateDir: ipamDir ?? join(opts.stateDir, "ipam"),
      ...(opts.log ? { log: opts.log } : {}),
    });
    const endpoints = await EndpointManager.start(datapath);
    try {
      const pods = new PodLifecycle(endpoints, ipam, opts.log, reservationGraceMs);
      await pods.collectOrphans();
      return new PodNetwork(ipam, endpoints, pods);
    } catch (e) {
      await endpoints.close();
      throw e;
    }
  }

  /** Releases this process's handles; pinned links and maps keep the wired pods forwarding. */
  close(): Promise<void> {
    return this.endpoints.close();
  }
}
