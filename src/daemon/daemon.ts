// The nkitd core: owns the IPAM and the endpoint datapath of this host. Front doors (NRI, the CNI
// endpoint, the gRPC API) attach to this object. Every part is a component (./components.ts): started
// in the order below, unwound when a later one fails, reloaded in order and stopped in reverse.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { Node as ApiNode, NriStatus as ApiNriStatus } from "../api/types.js";
import type { DatapathObjectMaps } from "../bpf/gen/datapath.skel.js";
import { lbMapSizes } from "../bpf/lb.js";
import { type CniServer, openAttachmentStore, startCniEndpoint } from "../cni/index.js";
import { ContainerdClient, containerIdentity, nerdctlContainerRef } from "../containerd/containers.js";
import type { EndpointManager } from "../datapath/endpoint-manager.js";
import { InvalidArgumentError, StateCorruptError } from "../errors.js";
import type { Ipam } from "../ipam/ipam.js";
import type { Logger } from "../log.js";
import { observeCniRequest, timeWiring } from "../metrics/index.js";
import { Rtnl } from "../netlink/index.js";
import { allocationFromArgs, allocationLabels, lookupAllocation } from "../nomad/allocations.js";
import { NomadClient } from "../nomad/client.js";
import type { ClusterMembership } from "../nomad/cluster-membership.js";
import type { NodeRecord } from "../nomad/node-claims.js";
import { NomadServiceSync } from "../nomad/service-sync.js";
import type { NriPlugin } from "../nri/index.js";
import { PodNetwork } from "../pods/network.js";
import { MaglevTables } from "../services/maglev-tables.js";
import { hostCgroup2, SocketLb } from "../services/socket-lb.js";
import { IpPrefix } from "../util/ip.js";
import { clusterPeers, joinCluster } from "./cluster.js";
import { Components } from "./components.js";
import type { NkitdConfig } from "./config.js";
import { type ConntrackService, startConntrack } from "./conntrack.js";
import { type HostServices, startHostServices } from "./host-services.js";
import { acquireInstanceLock, type InstanceLock } from "./lock.js";
import { type MasqueradeService, startMasquerade } from "./masquerade.js";
import { startNri } from "./nri.js";
import { type Peer, type PeerRoute, syncPeerRoutes } from "./peers.js";
import { type Services, startServices } from "./services.js";
import { defaultRouteDevices } from "./uplinks.js";

/** The per-packet load-balancer's tables, which the datapath object created; absent = socket LB only. */
function openMaglevTables(maps: DatapathObjectMaps, size: number, log: Logger): MaglevTables | undefined {
  try {
    return MaglevTables.open(maps, size);
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
   * Applies what can change while running (`masquerade:`, `timeouts:`) from a new config; returns
   * the top-level keys that changed but need a restart.
   */
  reload(next: NkitdConfig): Promise<string[]>;
  /** Stops the control plane; pinned links and maps keep forwarding. */
  stop(): Promise<void>;
}

/** How often the endpoints' host devices are checked (and a vanished one's pod wired again). */
const REPAIR_MS = 5_000;

/** Keys reload() applies in place. */
const RELOADABLE = new Set(["masquerade", "timeouts", "peers"]);

export interface DaemonHooks {
  /** This node left the Nomad cluster (`nkit node leave`): nkitd should stop. */
  onLeft?: () => void;
}

export async function startDaemon(
  config: NkitdConfig,
  log: Logger,
  hooks: DaemonHooks = {},
): Promise<Daemon> {
  mkdirSync(config.paths.state, { recursive: true, mode: 0o700 });
  mkdirSync(config.paths.run, { recursive: true, mode: 0o755 });
  const parts = new Components(log);
  await parts.require({
    name: "instance lock",
    start: () => acquireInstanceLock(config.paths.state),
    stop: (lock: InstanceLock) => lock.release(),
  });
  const uplinks = config.uplinks.length > 0 ? config.uplinks : await defaultUplinks().catch(fail(parts));
  // --- Nomad's API (src/nomad): allocations' identity, native services, the cluster's node claims;
  // off without an address.
  const nomad = config.nomad.address
    ? new NomadClient({
        address: config.nomad.address,
        ...(config.nomad.token ? { token: config.nomad.token } : {}),
        ...(config.nomad.tokenFile ? { tokenFile: config.nomad.tokenFile } : {}),
      })
    : undefined;
  // --- the Nomad cluster (src/nomad, nomad.cluster): this node's pod CIDRs come from its claim, so
  // it joins before the datapath opens its IPAM; the other nodes' claims become routed peers.
  let onClusterNodes: (others: NodeRecord[]) => Promise<void> = async () => undefined;
  const cluster =
    nomad && config.nomad.cluster.cidrs.length > 0
      ? await parts.require({
          name: "Nomad cluster membership",
          start: () =>
            joinCluster({ config, nomad, uplinks, onNodes: (others) => onClusterNodes(others), log }),
          stop: (m: ClusterMembership) => m.stop(),
        })
      : undefined;
  if (cluster) config.podCIDRs = cluster.podCIDRs;
  // --- datapath (src/datapath) behind the pod lifecycle (src/pods): IPAM, programs, endpoints and
  // uplinks; pinned, so the wired pods keep forwarding while nkitd is down.
  const net = await parts.require({
    name: "datapath",
    start: () =>
      PodNetwork.open({
        podCIDRs: config.podCIDRs,
        mode: config.datapath,
        bpffsDir: config.paths.bpffs,
        stateDir: config.paths.state,
        mtu: config.mtu,
        bigTcp: config.bigTcp,
        flowSteering: config.flowSteering,
        uplinks,
        mapSizes: lbMapSizes(config.limits),
        log,
      }),
    stop: (n: PodNetwork) => n.close(),
  });
  const { endpoints, ipam, pods } = net;
  log.info(
    { mode: endpoints.mode, endpoints: endpoints.list().length, uplinks, podCIDRs: config.podCIDRs },
    "datapath ready",
  );
  // --- repair: a pod whose host device was deleted behind nkitd's back (its netns alive) is wired
  // again with its addresses within REPAIR_MS; what cannot be is logged. Components started later
  // add what they keep in place to the same pass (pins removed under them, sockets whose files
  // went).
  const repairs: { what: string; run: () => Promise<unknown> }[] = [
    { what: "the endpoints' devices and pins", run: () => endpoints.repair() },
  ];
  await parts.require({
    name: "endpoint repair",
    needs: ["datapath"],
    start: () => {
      let pass: Promise<unknown> = Promise.resolve();
      const timer = setInterval(() => {
        pass = pass.then(async () => {
          for (const r of repairs) {
            await r.run().catch((e: unknown) => log.error({ err: e }, `checking ${r.what} failed`));
          }
        });
      }, REPAIR_MS);
      timer.unref();
      return {
        stop: async () => {
          clearInterval(timer);
          await pass;
        },
      };
    },
    stop: (r: { stop(): Promise<void> }) => r.stop(),
  });
  // --- conntrack (src/conntrack): the translations' flows, their timeouts and their collection.
  const conntrack = await parts.require({
    name: "conntrack",
    needs: ["datapath"],
    start: () => startConntrack(config, endpoints.maps, log),
    stop: (c: ConntrackService) => c.stop(),
    reload: (c: ConntrackService, next: NkitdConfig) => {
      c.reconfigure(next);
      config.timeouts = next.timeouts;
    },
  });
  // Every other nkit host: static peers and, while this node is in the cluster, the other nodes.
  let inCluster = cluster !== undefined;
  const routedPeers = (staticPeers: readonly Peer[]): Peer[] => [
    ...staticPeers,
    ...(cluster && inCluster ? clusterPeers(cluster.peers()) : []),
  ];
  // --- masquerade (src/masquerade): pod traffic leaving through an uplink gets its address.
  const masq = await parts.require({
    name: "masquerade",
    needs: ["datapath", "conntrack"],
    start: () =>
      startMasquerade(config, uplinks, endpoints.maps, conntrack.table, log, () =>
        routedPeers(config.peers).flatMap((p) => p.address),
      ),
    stop: (m: MasqueradeService) => m.stop(),
    reload: async (m: MasqueradeService, next: NkitdConfig) => {
      await m.reconfigure(next);
      config.masquerade = next.masquerade;
    },
  });
  // --- routes to other nkit hosts' pods (static `peers:` and the cluster's other nodes): direct,
  // never masqueraded; left in place when nkitd stops, like the rest of the datapath. One sync at a
  // time: a reload and a change of the cluster's nodes may come together.
  let peerRoutes: PeerRoute[] = [];
  let routing: Promise<unknown> = Promise.resolve();
  const routePeers = (staticPeers: readonly Peer[]): Promise<void> => {
    const next = routing.then(async () => {
      peerRoutes = await syncPeerRoutes(routedPeers(staticPeers), log);
      await masq.refreshPeers();
    });
    routing = next.catch(() => undefined);
    return next;
  };
  await parts.require({
    name: "peer routes",
    start: async () => {
      await routePeers(config.peers);
      onClusterNodes = () => routePeers(config.peers);
      cluster?.start();
    },
    reload: async (_none: undefined, next: NkitdConfig) => {
      config.peers = next.peers;
      await routePeers(next.peers);
    },
  });
  const routesOf = (name: string) =>
    peerRoutes
      .filter((r) => r.peer === name)
      .map((r) => ({ podCidr: r.podCIDR, via: r.via, state: r.state }));
  const nodes = (): ApiNode[] => [
    ...config.peers.map((p) => ({
      name: p.name,
      addresses: [...p.address],
      podCidrs: [...p.podCIDRs],
      source: "peers",
      routes: routesOf(p.name),
      self: false,
      heartbeatAt: "",
    })),
    ...(cluster && inCluster ? cluster.nodes() : []).map((n, i) => ({
      name: n.name,
      addresses: [...n.addresses],
      podCidrs: [...n.podCIDRs],
      source: "nomad",
      routes: i === 0 ? [] : routesOf(n.name),
      self: i === 0,
      heartbeatAt: n.heartbeatAt,
    })),
  ];
  const clusterApi = cluster && {
    status: () => {
      const st = cluster.status();
      return {
        node: st.node,
        podCidrs: st.podCIDRs,
        connected: inCluster && st.connected,
        lastError: inCluster ? st.lastError : "left the cluster",
        syncedAt: st.syncedAt,
        nodes: inCluster ? cluster.peers().length : 0,
      };
    },
    forget: (name: string) => cluster.forget(name),
    leave: async (force: boolean) => {
      const wired = endpoints.list().length;
      if (wired > 0 && !force) {
        throw new InvalidArgumentError(
          `${wired} pods are wired on this node with addresses from ${cluster.podCIDRs.join(", ")}: stop them first (or nkit node leave --force; their addresses may then go to another node)`,
        );
      }
      await cluster.leave();
      inCluster = false;
      await routePeers(config.peers);
      setImmediate(() => hooks.onLeft?.());
      return cluster.podCIDRs;
    },
  };
  // What nkit-cni attached (with the port mappings), read before services start so a restart
  // re-claims every host port before stale frontends are dropped.
  const attachments = openAttachmentStore(join(config.paths.state, "cni-attachments"), log);
  // --- services (src/services): the socket load-balancer on paths.cgroup and every service source.
  const services = await parts.start({
    name: "services",
    needs: ["datapath"],
    start: () => {
      const maglev = openMaglevTables(endpoints.maps, config.limits.maglevTableSize, log);
      const lb = SocketLb.open({
        bpffsDir: config.paths.bpffs,
        cgroup: config.paths.cgroup || hostCgroup2(),
        serviceCIDRs: config.serviceCIDRs,
        mapSizes: lbMapSizes(config.limits),
        log,
        ...(maglev ? { maglev } : {}),
      });
      return startServices(config, endpoints, lb, log, { attachments, pods });
    },
    stop: (s: Services) => s.stop(),
    // An explicit cgroup that cannot be used is a configuration error; a host without cgroup v2
    // still gets pod networking, loudly without services. An unreadable state file never passes.
    optional: (e) => !config.paths.cgroup && !(e instanceof StateCorruptError),
  });
  // --- containerd's API (src/containerd): names and labels of the containers nkit-cni wires.
  const containerd = await parts.require({
    name: "containerd client",
    start: () => new ContainerdClient({ socket: config.containerd.socket }),
    stop: (c: ContainerdClient) => c.close(),
  });
  // --- Nomad's native services (src/nomad): VIPs in the service maps, kept in sync with Nomad.
  const nomadSync =
    nomad && services
      ? await parts.require({
          name: "Nomad service sync",
          needs: ["services"],
          start: () => {
            const sync = new NomadServiceSync({
              client: nomad,
              namespace: config.nomad.namespace,
              serviceCIDRs: config.serviceCIDRs.map((c) => IpPrefix.parse(c)),
              publish: (specs) => {
                for (const f of services.manager.replaceSource("nomad", specs)) {
                  log.error({ service: f.name, err: f.error }, `Nomad service refused: ${f.error.message}`);
                }
              },
              log,
            });
            sync.start();
            return sync;
          },
          stop: (s: NomadServiceSync) => s.stop(),
        })
      : undefined;
  if (services) {
    repairs.push({
      what: "the load-balancer's pins",
      run: async () => {
        const pins = services.repin();
        if (pins.length > 0) log.warn({ pins }, "the load-balancer's pins were removed: pinned them again");
      },
    });
  }
  // Services remembered from a Nomad no longer configured go.
  if (!nomad) services?.manager.replaceSource("nomad", []);
  // --- CNI endpoint for nkit-cni (src/cni): <paths.run>/cni.sock.
  const cni = await parts.require({
    name: "CNI endpoint",
    needs: ["datapath", "containerd client"],
    start: () =>
      startCniEndpoint({
        socketPath: join(config.paths.run, "cni.sock"),
        attachments,
        endpoints,
        pods,
        nri: config.nri.enabled,
        identity: (id, args) => workloadIdentity(id, args, containerd, nomad),
        timeWiring,
        ...(services ? { hostPorts: services.hostPorts } : {}),
        observe: observeCniRequest,
        log,
      }),
    stop: (cni: CniServer) => cni.close(),
  });
  repairs.push({
    what: "the CNI socket",
    run: async () => {
      if (await cni.ensureListening())
        log.warn({ socket: cni.socketPath }, "the CNI socket was gone: listening again");
    },
  });
  // The NRI plugin starts last (pods are wired only once everything is up); until then, and
  // whenever it is not registered, `nkit status` says so.
  let nriPlugin: NriPlugin | undefined;
  const nriStatus = (): ApiNriStatus => ({
    socket: config.nri.socket,
    connected: nriPlugin?.connected ?? false,
    synchronized: nriPlugin?.synchronized ?? false,
    lastError: nriPlugin ? nriPlugin.lastError : "not started yet",
    runtime: nriPlugin?.runtimeInfo
      ? `${nriPlugin.runtimeInfo.runtimeName} ${nriPlugin.runtimeInfo.runtimeVersion}`
      : "",
  });
  // --- host services (src/api): gRPC API on <paths.run>/nkit.sock, metrics on metrics.listen.
  const hostServices = await parts.require({
    name: "host services",
    needs: ["datapath", "masquerade"],
    start: () =>
      startHostServices(
        {
          config,
          endpoints,
          ipam,
          pods,
          uplinks,
          nat: masq,
          ...(services ? { services: services.manager, lbCounters: services.counters } : {}),
          ...(nomadSync ? { nomad: nomadSync } : {}),
          nodes,
          ...(clusterApi ? { cluster: clusterApi } : {}),
          ...(config.nri.enabled ? { nri: { status: nriStatus } } : {}),
        },
        log,
      ),
    stop: (h: HostServices) => h.stop(),
  });
  repairs.push({
    what: "the API socket",
    run: async () => {
      if (await hostServices.ensureListening()) {
        log.warn({ socket: hostServices.apiSocket }, "the API socket was gone: listening again");
      }
    },
  });
  // --- NRI plugin (src/nri): containerd's pod sandbox events wire and unwire CRI pods.
  if (config.nri.enabled) {
    nriPlugin = await parts.require({
      name: "NRI plugin",
      needs: ["datapath"],
      start: () => startNri(config, pods, log),
      stop: (nri: NriPlugin) => nri.stop(),
    });
  }
  return {
    config,
    endpoints,
    ipam,
    uplinks,
    reload: async (next) => {
      // The pod CIDRs of a cluster member are its claim's, not the file's.
      if (cluster) next.podCIDRs = config.podCIDRs;
      const cur = config as unknown as Record<string, unknown>;
      const nxt = next as unknown as Record<string, unknown>;
      const changed = Object.keys(nxt).filter((k) => JSON.stringify(cur[k]) !== JSON.stringify(nxt[k]));
      await parts.reload(next);
      return changed.filter((k) => !RELOADABLE.has(k));
    },
    stop: () => parts.stop(),
  };
}

/**
 * The labels of a workload nkit-cni wired at ADD, from whoever runs it: containerd for nerdctl's
 * `<namespace>-<id>` containers, Nomad for allocations (its NOMAD_* CNI args when it sends them).
 */
async function workloadIdentity(
  id: string,
  args: Readonly<Record<string, string>>,
  containerd: ContainerdClient,
  nomad: NomadClient | undefined,
): Promise<Record<string, string> | undefined> {
  if (nerdctlContainerRef(id)) return containerIdentity(containerd, id);
  const fromArgs = allocationFromArgs(id, args);
  if (fromArgs) return allocationLabels(fromArgs);
  const alloc = nomad && (await lookupAllocation(nomad, id));
  return alloc ? allocationLabels(alloc) : undefined;
}

/** The devices holding a default route: the uplinks when the config names none. */
async function defaultUplinks(): Promise<string[]> {
  const host = await Rtnl.host();
  try {
    return await defaultRouteDevices(host);
  } finally {
    await host.close();
  }
}

/** Unwinds what started, then rethrows: for steps between components that can fail. */
function fail(parts: Components): (e: unknown) => Promise<never> {
  return async (e) => {
    await parts.stop();
    throw e;
  };
}
