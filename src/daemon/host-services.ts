// The host services nkitd runs next to its core: the gRPC API on <paths.run>/nkit.sock and, when
// metrics.listen is set, the Prometheus endpoint. Started after the datapath is ready, stopped
// before it is closed (src/daemon/daemon.ts). Each map owner contributes the views of its maps to
// the API's map catalog.
import { join } from "node:path";
import { API_SOCKET_NAME } from "../api/proto.js";
import { type ApiContext, startApiServer } from "../api/server.js";
import { MapCatalog } from "../bpf/map-views.js";
import type { EndpointManager } from "../datapath/endpoint-manager.js";
import { DatapathEvents } from "../datapath/events.js";
import { DATAPATH_MAP_VIEWS } from "../datapath/map-views.js";
import type { Ipam } from "../ipam/ipam.js";
import type { Logger } from "../log.js";
import type { NatFlowView } from "../masquerade/masquerade.js";
import {
  registerDatapathCollector,
  registerNatCollector,
  registerServiceCollector,
} from "../metrics/collectors.js";
import { startMetricsServer } from "../metrics/http.js";
import { countLostEvents, registry } from "../metrics/index.js";
import type { PodLifecycle } from "../pods/lifecycle.js";
import type { ServiceManager } from "../services/manager.js";
import { frontendId } from "../services/spec.js";
import { formatHostPort } from "../util/ip.js";
import type { NkitdConfig } from "./config.js";

interface HostServicesCore {
  config: NkitdConfig;
  endpoints: EndpointManager;
  ipam: Ipam;
  pods: PodLifecycle;
  uplinks: readonly string[];
  /** Absent when the service load-balancer did not start. */
  services?: ServiceManager;
  /** The load-balancer's per-reason counters. */
  lbCounters?: () => Record<string, bigint>;
  /** Masquerade's translated flows. */
  nat?: { flows(): NatFlowView[]; flowCounts(): Record<string, number> };
  /** Nomad's service sync, for `nkit status`. */
  nomad?: ApiContext["nomad"];
  /** `nkit node list`. */
  nodes?: ApiContext["nodes"];
  /** `nkit node forget|leave`. */
  cluster?: ApiContext["cluster"];
  /** The NRI plugin's state (`nkit status`); absent when NRI is off. */
  nri?: ApiContext["nri"];
}

export interface HostServices {
  readonly apiSocket: string;
  /** Bound metrics address, or "" when metrics are off. */
  readonly metricsAddress: string;
  /** Listens again when the API socket file is gone; true when it did. */
  ensureListening(): Promise<boolean>;
  stop(): Promise<void>;
}

export async function startHostServices(core: HostServicesCore, log: Logger): Promise<HostServices> {
  const startedAt = new Date();
  const { config, endpoints, ipam } = core;
  const removeCollector = registerDatapathCollector(registry, {
    bpffsDir: config.paths.bpffs,
    mode: endpoints.mode,
    endpoints: () => endpoints.list(),
    ipamUsage: () => ipam.usage(),
    startedAt,
  });
  const events = new DatapathEvents(endpoints.maps.nk_events, { log, onLost: countLostEvents });
  const cleanup: (() => unknown)[] = [removeCollector, () => events.close()];
  if (core.nat) cleanup.push(registerNatCollector(registry, core.nat));
  const services = core.services;
  if (services) {
    cleanup.push(
      registerServiceCollector(registry, {
        services: () =>
          services.list().map((v) => ({
            name: v.spec.name,
            source: v.source,
            frontends: v.entries.map((e) => {
              const counts = services.connections(e);
              return {
                frontend: frontendId(e),
                backends: e.backends.map((b, i) => ({
                  backend: formatHostPort(b.address, b.port),
                  connections: counts[i] ?? 0n,
                })),
              };
            }),
          })),
        counters: core.lbCounters ?? (() => ({})),
      }),
    );
  }
  const stopAll = async () => {
    for (const c of cleanup.reverse()) {
      try {
        await c();
      } catch (e) {
        log.error({ err: e }, "stopping host services");
      }
    }
  };
  try {
    let metricsAddress = "";
    if (config.metrics.listen) {
      const m = await startMetricsServer(config.metrics.listen, () => registry.metrics());
      cleanup.push(() => m.close());
      metricsAddress = m.address;
      log.info({ listen: m.address }, "metrics listening");
    }
    const api = await startApiServer(
      {
        endpoints,
        pods: core.pods,
        ipam,
        uplinks: core.uplinks,
        bpffsDir: config.paths.bpffs,
        stateDir: config.paths.state,
        metricsListen: metricsAddress,
        startedAt,
        renderMetrics: () => registry.metrics(),
        maps: new MapCatalog(config.paths.bpffs, DATAPATH_MAP_VIEWS),
        events,
        ...(core.services ? { services: core.services } : {}),
        ...(core.nat ? { nat: core.nat } : {}),
        ...(core.nomad ? { nomad: core.nomad } : {}),
        ...(core.nodes ? { nodes: core.nodes } : {}),
        ...(core.cluster ? { cluster: core.cluster } : {}),
        ...(core.nri ? { nri: core.nri } : {}),
        log,
      },
      join(config.paths.run, API_SOCKET_NAME),
    );
    cleanup.push(() => api.close());
    return {
      apiSocket: api.socketPath,
      metricsAddress,
      ensureListening: () => api.ensureListening(),
      stop: stopAll,
    };
  } catch (e) {
    await stopAll();
    throw e;
  }
}
