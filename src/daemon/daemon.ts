// The nkitd core: owns the IPAM and the endpoint datapath of this host. Front doors (NRI, the CNI
// endpoint, the gRPC API) attach to this object.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { lbMapSizes } from "../bpf/lb.js";
import { openAttachmentStore, startCniEndpoint } from "../cni/index.js";
import { EndpointManager } from "../datapath/endpoint-manager.js";
import { Ipam } from "../ipam/ipam.js";
import type { Logger } from "../log.js";
import { Rtnl } from "../netlink/index.js";
import { PodLifecycle } from "../pods/lifecycle.js";
import { MaglevTables } from "../services/maglev-tables.js";
import { hostCgroup2, SocketLb } from "../services/socket-lb.js";
import type { NkitdConfig } from "./config.js";
import { startHostServices } from "./host-services.js";
import { acquireInstanceLock, type InstanceLock } from "./lock.js";
import { startMasquerade } from "./masquerade.js";
import { startNri } from "./nri.js";
import { type Services, startServices } from "./services.js";
import { defaultRouteDevices } from "./uplinks.js";

/** The per-packet load-balancer's tables, which the datapath object created; absent = socket LB only. */
function openMaglevTables(bpffs: string, size: number, log: Logger): MaglevTables | undefined {
  try {
    return MaglevTables.open(bpffs, size);
  } catch (e) {
    log.error(
      { err: e },
      "host ports are not reachable from other hosts: the per-packet load-balancer maps are missing",
    );
    return undefined;
  }
}

export interface Daemon {
  readonly config: NkitdConfig;
  readonly endpoints: EndpointManager;
  readonly ipam: Ipam;
  readonly uplinks: readonly string[];
  /**
   * Applies what can change while running (the `masquerade:` section) from a new config; returns
   * the top-level keys that changed but need a restart.
   */
  reload(next: NkitdConfig): Promise<string[]>;
  /** Stops the control plane; pinned links and maps keep forwarding. */
  stop(): Promise<void>;
}

/** Keys reload() applies in place. */
const RELOADABLE = new Set(["masquerade", "timeouts"]);

export async function startDaemon(config: NkitdConfig, log: Logger): Promise<Daemon> {
  mkdirSync(config.paths.state, { recursive: true, mode: 0o700 });
  mkdirSync(config.paths.run, { recursive: true, mode: 0o755 });
  const lock: InstanceLock = acquireInstanceLock(config.paths.state);
  try {
    const ipam = Ipam.open({ podCIDRs: config.podCIDRs, statePath: join(config.paths.state, "ipam.json") });
    let uplinks = config.uplinks;
    if (uplinks.length === 0) {
      const host = await Rtnl.host();
      try {
        uplinks = await defaultRouteDevices(host);
      } finally {
        await host.close();
      }
    }
    const endpoints = await EndpointManager.start({
      mode: config.datapath,
      bpffsDir: config.paths.bpffs,
      stateDir: config.paths.state,
      ipam,
      mtu: config.mtu,
      bigTcp: config.bigTcp,
      uplinks,
      mapSizes: lbMapSizes(config.limits),
      log,
    });
    log.info(
      { mode: endpoints.mode, endpoints: endpoints.list().length, uplinks, podCIDRs: config.podCIDRs },
      "datapath ready",
    );
    // --- masquerade (src/masquerade): pod traffic leaving through an uplink gets its address.
    const masq = await startMasquerade(config, uplinks, log).catch(async (e: unknown) => {
      await endpoints.close();
      throw e;
    });
    // --- end masquerade
    // The reservations and the CRI pod flow, one owner shared by the CNI door (reserve, pre-wire,
    // release) and the NRI door (wire, labels, release).
    const pods = new PodLifecycle(endpoints, ipam, log);
    // What nkit-cni attached (with the port mappings), read before services start so a restart
    // re-claims every host port before stale frontends are dropped.
    const attachments = openAttachmentStore(join(config.paths.state, "cni-attachments.json"));
    // --- services (src/services): the socket load-balancer on paths.cgroup and every service source.
    let services: Services | undefined;
    try {
      const cgroup = config.paths.cgroup || hostCgroup2();
      const maglev = openMaglevTables(config.paths.bpffs, config.limits.maglevTableSize, log);
      const lb = SocketLb.open({
        bpffsDir: config.paths.bpffs,
        cgroup,
        serviceCIDRs: config.serviceCIDRs,
        mapSizes: lbMapSizes(config.limits),
        log,
        ...(maglev ? { maglev } : {}),
      });
      services = await startServices(config, endpoints, lb, log, { attachments, pods });
    } catch (e) {
      // An explicit cgroup that cannot be used is a configuration error; a host without cgroup v2
      // still gets pod networking, loudly without services.
      if (config.paths.cgroup) {
        masq.stop();
        await endpoints.close();
        throw e;
      }
      log.error({ err: e }, "services are off: the socket load-balancer could not start");
    }
    // --- end services
    // Whoever releases a container (CNI DEL or GC, NRI REMOVE, Synchronize collecting a pod whose
    // DEL never came), its host ports and its attachment go with its addresses.
    pods.onReleased((id) => {
      services?.hostPorts.release(id);
      attachments.delete(id);
    });
    // --- CNI endpoint for nkit-cni (src/cni): <paths.run>/cni.sock; started last, stopped first.
    const cni = await startCniEndpoint({
      socketPath: join(config.paths.run, "cni.sock"),
      attachments,
      endpoints,
      pods,
      ...(services ? { hostPorts: services.hostPorts } : {}),
      log,
    }).catch(async (e: unknown) => {
      await services?.stop();
      masq.stop();
      await endpoints.close();
      throw e;
    });
    // --- end CNI endpoint
    // --- host services (src/api): gRPC API on <paths.run>/nkit.sock, metrics on metrics.listen.
    const host = await startHostServices(
      {
        config,
        endpoints,
        ipam,
        uplinks,
        nat: masq,
        ...(services ? { services: services.manager, lbCounters: services.counters } : {}),
      },
      log,
    ).catch(async (e: unknown) => {
      await cni.close();
      await services?.stop();
      masq.stop();
      await endpoints.close();
      throw e;
    });
    // --- end host services
    // --- NRI plugin (src/nri): containerd's pod sandbox events wire and unwire CRI pods.
    const nri = config.nri.enabled ? startNri(config, pods, log) : undefined;
    // --- end NRI plugin
    return {
      config,
      endpoints,
      ipam,
      uplinks,
      reload: async (next) => {
        const cur = config as unknown as Record<string, unknown>;
        const nxt = next as unknown as Record<string, unknown>;
        const changed = Object.keys(nxt).filter((k) => JSON.stringify(cur[k]) !== JSON.stringify(nxt[k]));
        await masq.reconfigure(next);
        config.masquerade = next.masquerade;
        config.timeouts = next.timeouts;
        return changed.filter((k) => !RELOADABLE.has(k));
      },
      stop: async () => {
        await nri?.stop(); // NRI plugin
        await host.stop(); // host services
        await cni.close(); // CNI endpoint
        await services?.stop(); // services
        masq.stop(); // masquerade
        await endpoints.close();
        lock.release();
      },
    };
  } catch (e) {
    lock.release();
    throw e;
  }
}
