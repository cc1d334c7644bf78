// The service side of nkitd: the service manager over the load-balancer maps, fed by every source
// (static `services:`, the watched paths.services directory, the API, label selectors following the
// endpoints, CNI host ports). Started after the datapath (selectors need the endpoints), stopped
// before it; the maps and cgroup links stay pinned, so services keep resolving while nkitd is down.
import { join } from "node:path";
import type { EndpointManager } from "../datapath/endpoint-manager.js";
import type { Logger } from "../log.js";
import { Rtnl } from "../netlink/index.js";
import { ServiceFiles } from "../services/files.js";
import { HostPorts } from "../services/host-ports.js";
import { type LbTable, type SelectableEndpoint, ServiceManager } from "../services/manager.js";
import type { NkitdConfig } from "./config.js";
import { globalAddresses } from "./uplinks.js";

/** The load-balancer maps as the daemon holds them. */
export interface ServiceDatapath extends LbTable {
  /** Releases this process's handles; pinned maps and links keep working. */
  close(): void;
  /** The socket hooks' per-reason counters (translated, refused, ...). */
  counters?(): Record<string, bigint>;
}

export interface Services {
  readonly manager: ServiceManager;
  readonly hostPorts: HostPorts;
  /** The load-balancer's per-reason counters, for metrics. */
  counters(): Record<string, bigint>;
  stop(): Promise<void>;
}

const HOST_ADDRESS_REFRESH_MS = 30_000;

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

export async function startServices(
  config: NkitdConfig,
  endpoints: EndpointManager,
  datapath: ServiceDatapath,
  log: Logger,
): Promise<Services> {
  const podDevice = (index: number) => endpoints.list().some((e) => e.hostIfindex === index);
  let hostAddresses = await globalHostAddresses(podDevice);
  const refresh = setInterval(() => {
    globalHostAddresses(podDevice).then(
      (a) => {
        hostAddresses = a;
      },
      (e: unknown) => log.warn({ err: e }, "cannot list the host's addresses for host ports"),
    );
  }, HOST_ADDRESS_REFRESH_MS);
  refresh.unref();

  const manager = new ServiceManager({
    table: datapath,
    statePath: join(config.paths.state, "services.json"),
    log,
    holdUntilReady: true,
  });
  manager.setEndpoints(selectable(endpoints));
  for (const f of manager.replaceSource("config", config.services)) {
    log.error({ service: f.name, err: f.error }, `config service refused: ${f.error.message}`);
  }
  const files = new ServiceFiles({ dir: config.paths.services, manager, log });
  files.start();
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
  const hostPorts = new HostPorts({ manager, hostAddresses: () => hostAddresses });
  log.info({ services: manager.list().length, dir: config.paths.services }, "services ready");
  return {
    manager,
    hostPorts,
    counters: () => datapath.counters?.() ?? {},
    stop: async () => {
      clearInterval(refresh);
      unsubscribe();
      files.close();
      datapath.close();
    },
  };
}
