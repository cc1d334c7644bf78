// The service side of nkitd: the service manager over the load-balancer maps, fed by every source
// (static `services:`, the watched paths.services directory, the API, label selectors following the
// endpoints, CNI host ports). Started after the datapath (selectors need the endpoints), stopped
// before it; the maps and cgroup links stay pinned, so services keep resolving while nkitd is down.
import { join } from "node:path";
import type { AttachmentStore } from "../cni/attachments.js";
import type { EndpointManager } from "../datapath/endpoint-manager.js";
import type { Logger } from "../log.js";
import { Rtnl } from "../netlink/index.js";
import type { PodLifecycle } from "../pods/lifecycle.js";
import { ServiceFiles } from "../services/files.js";
import { HostPorts } from "../services/host-ports.js";
import { type LbTable, type SelectableEndpoint, ServiceManager } from "../services/manager.js";
import type { NkitdConfig } from "./config.js";
import { globalAddresses } from "./uplinks.js";

/** The load-balancer maps as the daemon holds them. */
interface ServiceDatapath extends LbTable {
  /** Releases this process's handles; pinned maps and links keep working. */
  close(): void;
  /** The socket hooks' per-reason counters (translated, refused, ...). */
  counters?(): Record<string, bigint>;
  /** Pins again what was unpinned under this process (SocketLb.repin). */
  repin?(): string[];
}

export interface Services {
  readonly manager: ServiceManager;
  readonly hostPorts: HostPorts;
  /** The load-balancer's per-reason counters, for metrics. */
  counters(): Record<string, bigint>;
  /** Pins again the load-balancer's maps and links whose pins were removed; the paths. */
  repin(): string[];
  stop(): Promise<void>;
}

/** How often the host's addresses are read for host ports published on every address. */
const HOST_ADDRESS_REFRESH_MS = 5_000;

async function globalHostAddresses(podCIDRDevices: (index: number) => boolean): Promise<string[]> {
  const host = await Rtnl.host();
  try {
    return (await globalAddresses(host)).filter((a) => !podCIDRDevices(a.index)).map((a) => a.address);
  } finally {
    await host.close();
  }
}

function selectable(endpoints: EndpointManager): SelectableEndpoint[] {
  return endpoints.list().map((e) => ({
    labels: e.labels,
    addresses: [e.addresses.ipv4, e.addresses.ipv6].filter((a): a is string => a !== undefined),
  }));
}

/**
 * Host ports of containers wired before this start: the CNI attachments nkitd stored. Re-claimed
 * before the service manager drops what it does not know, so a restart never closes them.
 */
interface StoredHostPorts {
  attachments: AttachmentStore;
  pods: Pick<PodLifecycle, "reservation" | "release">;
}

/**
 * Claims the stored attachments' host ports again. A container that went away while nkitd was
 * down (its reservation is gone, or nkit-cni wired it and the kernel removed its devices with its
 * netns) is released instead: addresses, attachment and ports.
 */
async function reclaimHostPorts(
  stored: StoredHostPorts,
  endpoints: EndpointManager,
  hostPorts: HostPorts,
  log: Logger,
): Promise<void> {
  let claimed = 0;
  for (const att of stored.attachments.list()) {
    const id = att.containerId;
    const vanished =
      stored.pods.reservation(id) === undefined || (att.mode === "wire" && endpoints.get(id) === undefined);
    if (vanished) {
      log.info({ id, mode: att.mode }, "container went away while nkitd was down: releasing it");
      hostPorts.release(id);
      await stored.pods.release(id);
      stored.attachments.delete(id);
      continue;
    }
    if (att.portMappings.length === 0) continue;
    try {
      hostPorts.claim(id, att.portMappings, att.addresses);
      claimed++;
    } catch (e) {
      log.error({ err: e, id }, `host ports of container ${id} cannot be restored: ${(e as Error).message}`);
    }
  }
  if (claimed > 0) log.info({ containers: claimed }, "host ports restored");
}

export async function startServices(
  config: NkitdConfig,
  endpoints: EndpointManager,
  datapath: ServiceDatapath,
  log: Logger,
  stored?: StoredHostPorts,
): Promise<Services> {
  const podDevice = (index: number) => endpoints.list().some((e) => e.hostIfindex === index);
  let hostAddresses = await globalHostAddresses(podDevice);
  let hostPorts: HostPorts | undefined;
  const refresh = setInterval(() => {
    globalHostAddresses(podDevice).then(
      (a) => {
        const changed = [...a].sort().join() !== [...hostAddresses].sort().join();
        hostAddresses = a;
        if (!changed || !hostPorts) return;
        log.info({ addresses: a }, "host addresses changed: host ports follow them");
        for (const f of hostPorts.readdress()) {
          log.error(
            { err: f.error, container: f.containerId },
            "host ports of a container cannot follow the host's addresses",
          );
        }
      },
      (e: unknown) => log.warn({ err: e }, "cannot list the host's addresses for host ports"),
    );
  }, HOST_ADDRESS_REFRESH_MS);
  refresh.unref();

  const manager = new ServiceManager({
    table: datapath,
    storeDir: join(config.paths.state, "services"),
    log,
    holdUntilReady: true,
  });
  manager.setEndpoints(selectable(endpoints));
  for (const f of manager.replaceSource("config", config.services)) {
    log.error({ service: f.name, err: f.error }, `config service refused: ${f.error.message}`);
  }
  const files = new ServiceFiles({ dir: config.paths.services, manager, log });
  files.start();
  hostPorts = new HostPorts({ manager, hostAddresses: () => hostAddresses });
  if (stored) await reclaimHostPorts(stored, endpoints, hostPorts, log);
  manager.ready();
  // Coalesce a burst of endpoint changes (a pod storm) into one selector pass.
  let queued = false;
  const unsubscribe = endpoints.onChange(() => {
    if (queued) return;
    queued = true;
    setImmediate(() => {
      queued = false;
      manager.setEndpoints(selectable(endpoints));
    });
  });
  log.info({ services: manager.list().length, dir: config.paths.services }, "services ready");
  return {
    manager,
    hostPorts,
    counters: () => datapath.counters?.() ?? {},
    repin: () => datapath.repin?.() ?? [],
    stop: async () => {
      clearInterval(refresh);
      unsubscribe();
      files.close();
      datapath.close();
    },
  };
}
