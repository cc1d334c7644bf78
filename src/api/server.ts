// nkitd's gRPC API (proto/nkit/v1) on a root-only unix socket. The socket is bound inside a private
// 0700 directory, set to 0600 and only then renamed into place, so it is never reachable with
// looser permissions; a stale socket at the path is removed first.
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, renameSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import {
  type handleServerStreamingCall,
  type handleUnaryCall,
  Metadata,
  Server,
  ServerCredentials,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import type { MapCatalog } from "../bpf/map-views.js";
import { probeAll } from "../bpf/probe.js";
import type { EndpointManager, WiredEndpoint } from "../datapath/endpoint-manager.js";
import type { DatapathEvents } from "../datapath/events.js";
import { isDrop, Reason } from "../datapath/reasons.js";
import { InvalidArgumentError, NkitError, NotFoundError, NotSupportedError } from "../errors.js";
import type { Ipam } from "../ipam/ipam.js";
import type { Logger } from "../log.js";
import type { NatFlowView } from "../masquerade/masquerade.js";
import { timeWiring } from "../metrics/index.js";
import type { AdmitRequest, PodLifecycle } from "../pods/lifecycle.js";
import type { ServiceManager, ServiceView } from "../services/manager.js";
import { type LbEntry, parseServiceSpec } from "../services/spec.js";
import { VERSION } from "../version.js";
import { toServiceError } from "./errors.js";
import { toApiEvent } from "./events.js";
import { apiServices, UndecodableRequest } from "./proto.js";
import { reasonCodeOf } from "./reason-names.js";
import type * as T from "./types.js";

export interface ApiContext {
  endpoints: EndpointManager;
  /** The way in for the endpoints the admin API wires and unwires. */
  pods: Pick<PodLifecycle, "admit" | "evict">;
  ipam: Ipam;
  uplinks: readonly string[];
  bpffsDir: string;
  stateDir: string;
  metricsListen: string;
  startedAt: Date;
  renderMetrics(): Promise<string>;
  /** The pinned maps `nkit bpf map list|dump` shows (every owner's views). */
  maps: MapCatalog;
  events: DatapathEvents;
  /** Absent when this nkitd runs without the service load-balancer (e.g. no cgroup v2 mount). */
  services?: ServiceManager;
  /** The other nkit hosts this one routes to, with each route's state. */
  nodes?: () => T.Node[];
  /** This node's membership of the Nomad cluster; absent without nomad.cluster. */
  cluster?: {
    forget(name: string): Promise<boolean>;
    /** Frees this node's claim; returns the CIDRs it held. */
    leave(force: boolean): Promise<string[]>;
    status(): T.NomadCluster;
  };
  /** Nomad's service sync; absent when nkitd follows no Nomad. */
  nomad?: { status(): Omit<T.NomadSync, "address">; readonly address: string };
  /** nkitd's NRI plugin; absent when nri.enabled is false. */
  nri?: { status(): T.NriStatus };
  /** The masquerade's translated flows; absent when masquerade did not start. */
  nat?: { flows(): NatFlowView[] };
  log: Logger;
}

interface ApiServer {
  readonly socketPath: string;
  /** Listens again when the socket file is gone (its dir is made again); true when it did. */
  ensureListening(): Promise<boolean>;
  close(): Promise<void>;
}

function toApiEndpoint(e: WiredEndpoint): T.Endpoint {
  return {
    id: e.id,
    epNum: e.epNum,
    mode: e.mode,
    hostIfName: e.hostIfName,
    hostIfindex: e.hostIfindex,
    podIfName: e.podIfName,
    netnsPath: e.netnsPath,
    addresses: { ipv4: e.addresses.ipv4 ?? "", ipv6: e.addresses.ipv6 ?? "" },
    labels: { ...e.labels },
  };
}

function pools(ipam: Ipam): T.Pool[] {
  return ipam.usage().map((u) => ({ cidr: u.cidr, family: u.family, size: u.size.toString(), used: u.used }));
}

function serviceCounts(m: ServiceManager | undefined) {
  const list = m?.list() ?? [];
  return {
    servicesEnabled: m !== undefined,
    serviceCount: list.length,
    frontendCount: list.reduce((n, v) => n + v.entries.length, 0),
  };
}

/** Connections per backend of a frontend, in backend order. */
type ConnectionCounts = (e: LbEntry) => bigint[];

function toApiService(v: ServiceView, connections: ConnectionCounts = () => []): T.Service {
  const s = v.spec;
  return {
    name: s.name,
    vip: s.vip,
    ports: s.ports.map((p) => ({ ...p })),
    backends: s.backends.map((b) => ({ address: b.address, port: b.port ?? 0 })),
    selector: { ...(s.selector ?? {}) },
    affinity: s.affinity,
    affinityTimeoutSeconds: s.affinityTimeoutSeconds,
    source: v.source,
    origin: v.origin,
    external: s.external === true,
    frontends: v.entries.map((e) => {
      const counts = connections(e);
      return {
        vip: e.vip,
        port: e.port,
        protocol: e.protocol,
        backends: e.backends.map((b, i) => ({ ...b, connections: (counts[i] ?? 0n).toString() })),
        external: e.external === true,
      };
    }),
  };
}

/** The API's service message in the shape service files are written in, for the one parser. */
function serviceDefinition(s: T.Service): Record<string, unknown> {
  const def: Record<string, unknown> = {
    name: s.name,
    vip: s.vip,
    ports: s.ports.map((p) => ({
      port: p.port,
      protocol: p.protocol || "tcp",
      ...(p.targetPort ? { targetPort: p.targetPort } : {}),
    })),
  };
  if (Object.keys(s.selector).length > 0) def.selector = { ...s.selector };
  else
    def.backends = s.backends.map((b) => {
      const host = b.address.includes(":") ? `[${b.address}]` : b.address;
      return b.port ? `${host}:${b.port}` : b.address;
    });
  if (s.affinity) def.affinity = s.affinity;
  if (s.affinityTimeoutSeconds) def.affinityTimeoutSeconds = s.affinityTimeoutSeconds;
  if (s.external) def.external = true;
  return def;
}

const REASON_CODES = new Map<string, number>(Object.entries(Reason));

/** The request, or the caller's error when its bytes were no valid message. */
function decoded<Req>(req: Req | UndecodableRequest): Req {
  if (req instanceof UndecodableRequest) {
    throw new InvalidArgumentError(`the request is no valid ${req.type} message: ${req.reason}`);
  }
  return req;
}

function unary<Req, Res>(
  log: Logger,
  name: string,
  fn: (req: Req) => Res | Promise<Res>,
): handleUnaryCall<Req, Res> {
  return (call, callback) => {
    Promise.resolve()
      .then(() => fn(decoded(call.request)))
      .then(
        (res) => callback(null, res),
        (e: unknown) => {
          log.debug({ err: e, rpc: name }, "API call failed");
          callback(toServiceError(e));
        },
      );
  };
}

interface Implementation {
  nkit: UntypedServiceImplementation;
  admin: UntypedServiceImplementation;
  /** Ends every open Monitor stream (at shutdown). */
  endStreams(): void;
}

function implementation(ctx: ApiContext): Implementation {
  const { log } = ctx;
  const streams = new Set<() => void>();
  const clusterOf = (): NonNullable<ApiContext["cluster"]> => {
    if (!ctx.cluster) {
      throw new NotSupportedError(
        "a Nomad cluster membership",
        "nomad.cluster.cidrs in nkitd's config (this nkitd routes to static peers only)",
      );
    }
    return ctx.cluster;
  };
  const getEndpoint = (id: string): WiredEndpoint => {
    if (!id) throw new InvalidArgumentError("endpoint id must not be empty");
    const ep = ctx.endpoints.get(id);
    if (!ep) throw new NotFoundError(`endpoint ${id} is not wired on this host (see \`nkit endpoint list\`)`);
    return ep;
  };

  const status = unary<T.Empty, T.StatusResponse>(log, "Status", () => ({
    version: VERSION,
    datapathMode: ctx.endpoints.mode,
    uptimeSeconds: (Date.now() - ctx.startedAt.getTime()) / 1000,
    endpointCount: ctx.endpoints.list().length,
    endpointProblems: ctx.endpoints.problems().map((p) => ({ id: p.id, problem: p.error })),
    ...serviceCounts(ctx.services),
    pools: pools(ctx.ipam),
    probes: Object.entries(probeAll()).map(([name, r]) => ({
      name,
      supported: r.supported,
      reason: r.supported ? "" : r.reason,
      need: r.supported ? "" : r.need,
    })),
    uplinks: [...ctx.uplinks],
    pid: process.pid,
    startedAt: ctx.startedAt.toISOString(),
    metricsListen: ctx.metricsListen,
    bpffsDir: ctx.bpffsDir,
    stateDir: ctx.stateDir,
    ...(ctx.nomad ? { nomad: { address: ctx.nomad.address, ...ctx.nomad.status() } } : {}),
    ...(ctx.cluster ? { cluster: ctx.cluster.status() } : {}),
    ...(ctx.nri ? { nri: ctx.nri.status() } : {}),
  }));

  const listEndpoints = unary<T.Empty, T.ListEndpointsResponse>(log, "ListEndpoints", () => ({
    endpoints: ctx.endpoints
      .list()
      .sort((a, b) => (a.id < b.id ? -1 : 1))
      .map(toApiEndpoint),
  }));

  const getEndpointRpc = unary<T.GetEndpointRequest, T.GetEndpointResponse>(log, "GetEndpoint", (req) => {
    const ep = getEndpoint(req.id);
    const counters = Object.entries(ctx.endpoints.counters(ep.id)).map(([reason, c]) => {
      const code = REASON_CODES.get(reason) ?? 0;
      return {
        reason,
        reasonCode: code,
        drop: isDrop(code),
        packets: c.packets.toString(),
        bytes: c.bytes.toString(),
      };
    });
    return { endpoint: toApiEndpoint(ep), counters };
  });

  const ipam = unary<T.Empty, T.IpamResponse>(log, "Ipam", () => ({
    pools: pools(ctx.ipam),
    allocations: ctx.ipam
      .list()
      .sort((a, b) => (a.id < b.id ? -1 : 1))
      .map((a) => ({ id: a.id, ipv4: a.ipv4 ?? "", ipv6: a.ipv6 ?? "" })),
  }));

  const listMapsRpc = unary<T.Empty, T.ListMapsResponse>(log, "ListMaps", () => ({
    maps: ctx.maps.list(),
  }));

  const dumpMapRpc = unary<T.DumpMapRequest, T.DumpMapResponse>(log, "DumpMap", (req) => {
    const d = ctx.maps.dump(req.name);
    return {
      map: d.map,
      entries: d.entries.map(([k, v]) => ({ keyJson: JSON.stringify(k), valueJson: JSON.stringify(v) })),
    };
  });

  const metrics = unary<T.Empty, T.MetricsResponse>(log, "Metrics", async () => ({
    text: await ctx.renderMetrics(),
  }));

  const monitor: handleServerStreamingCall<T.MonitorRequest, T.Event> = (call) => {
    let unsubscribe: (() => void) | undefined;
    try {
      const req = decoded(call.request);
      const filter: { epNum?: number; reasons?: Set<number> } = {};
      if (req.endpointId) filter.epNum = getEndpoint(req.endpointId).epNum;
      if (req.reasons.length > 0) filter.reasons = new Set(req.reasons.map(reasonCodeOf));
      const endpointOf = (n: number) => ctx.endpoints.list().find((e) => e.epNum === n)?.id;
      unsubscribe = ctx.events.subscribe(filter, (e, lostBefore) => {
        call.write(toApiEvent(e, endpointOf, lostBefore));
      });
    } catch (e) {
      call.emit("error", toServiceError(e));
      return;
    }
    const done = () => {
      unsubscribe?.();
      unsubscribe = undefined;
      streams.delete(end);
    };
    const end = () => {
      done();
      call.end();
    };
    streams.add(end);
    call.on("cancelled", done);
    call.on("close", done);
    call.on("error", done);
    // Tells the client the subscription is live (it sees response headers before any event).
    call.sendMetadata(new Metadata());
  };

  const serviceManager = (): ServiceManager => {
    if (!ctx.services) {
      throw new NotSupportedError(
        "services",
        "the service load-balancer, which did not start: see nkitd's log",
      );
    }
    return ctx.services;
  };
  const counts = (e: LbEntry) => ctx.services?.connections(e) ?? [];
  const getService = (name: string) => {
    if (!name) throw new InvalidArgumentError("service name must not be empty");
    const v = serviceManager().get(name);
    if (!v) throw new NotFoundError(`service ${name} does not exist (see \`nkit service list\`)`);
    return v;
  };
  const listServices = unary<T.Empty, T.ListServicesResponse>(log, "ListServices", () => ({
    services: ctx.services?.list().map((v) => toApiService(v, counts)) ?? [],
  }));
  const getServiceRpc = unary<T.GetServiceRequest, T.Service>(log, "GetService", (req) =>
    toApiService(getService(req.name), counts),
  );
  const addService = unary<T.AddServiceRequest, T.Service>(log, "AddService", (req) => {
    if (!req.service) throw new InvalidArgumentError("AddService: service is required");
    const spec = parseServiceSpec(serviceDefinition(req.service), "service");
    const v = serviceManager().upsert(spec, "api");
    log.info({ service: spec.name, vip: spec.vip, via: "api" }, "service added");
    return toApiService(v);
  });
  const deleteService = unary<T.DeleteServiceRequest, T.Service>(log, "DeleteService", (req) => {
    getService(req.name);
    const v = serviceManager().delete(req.name);
    log.info({ service: req.name, source: v.source, via: "api" }, "service deleted");
    return toApiService(v);
  });

  const wire = unary<T.WireEndpointRequest, T.Endpoint>(log, "WireEndpoint", async (req) => {
    if (!req.netnsPath) throw new InvalidArgumentError("WireEndpoint: netns_path is required");
    const r: AdmitRequest = { id: req.id, netnsPath: req.netnsPath, labels: { ...req.labels } };
    if (req.ifName) r.ifName = req.ifName;
    const addresses: { ipv4?: string; ipv6?: string } = {};
    if (req.addresses?.ipv4) addresses.ipv4 = req.addresses.ipv4;
    if (req.addresses?.ipv6) addresses.ipv6 = req.addresses.ipv6;
    if (addresses.ipv4 || addresses.ipv6) r.addresses = addresses;
    const ep = await timeWiring("wire", () => ctx.pods.admit(r));
    log.info({ id: ep.id, dev: ep.hostIfName, via: "api" }, "endpoint wired (admin API)");
    return toApiEndpoint(ep);
  });

  const unwire = unary<T.UnwireEndpointRequest, T.UnwireEndpointResponse>(
    log,
    "UnwireEndpoint",
    async (req) => {
      if (!req.id) throw new InvalidArgumentError("UnwireEndpoint: id is required");
      const removed = await timeWiring("unwire", () => ctx.pods.evict(req.id));
      log.info({ id: req.id, removed, via: "api" }, "endpoint unwired (admin API)");
      return { removed };
    },
  );

  return {
    nkit: {
      Status: status,
      ListEndpoints: listEndpoints,
      GetEndpoint: getEndpointRpc,
      Ipam: ipam,
      ListMaps: listMapsRpc,
      DumpMap: dumpMapRpc,
      Metrics: metrics,
      Monitor: monitor,
      ListServices: listServices,
      ListNat: unary<T.Empty, T.ListNatResponse>(log, "ListNat", () => ({
        enabled: ctx.nat !== undefined,
        flows: (ctx.nat?.flows() ?? []).map((f) => ({ ...f })),
      })),
      ListNodes: unary<T.Empty, T.ListNodesResponse>(log, "ListNodes", () => ({
        nodes: ctx.nodes?.() ?? [],
      })),
      ForgetNode: unary<T.ForgetNodeRequest, T.ForgetNodeResponse>(log, "ForgetNode", async (req) => {
        if (!req.name) throw new InvalidArgumentError("node name must not be empty");
        return { released: await clusterOf().forget(req.name) };
      }),
      LeaveCluster: unary<T.LeaveClusterRequest, T.LeaveClusterResponse>(
        log,
        "LeaveCluster",
        async (req) => ({
          podCidrs: await clusterOf().leave(req.force),
        }),
      ),
      GetService: getServiceRpc,
      AddService: addService,
      DeleteService: deleteService,
    },
    admin: { WireEndpoint: wire, UnwireEndpoint: unwire },
    endStreams: () => {
      for (const end of [...streams]) end();
    },
  };
}

/** Removes a stale socket; refuses to delete anything that is not a socket. */
function removeStaleSocket(path: string): void {
  let st: ReturnType<typeof lstatSync>;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) {
    throw new NkitError(
      "NKIT_INVALID_ARGUMENT",
      `${path} exists and is not a socket; remove it or point paths.run elsewhere`,
    );
  }
  rmSync(path, { force: true });
}

/**
 * Binds the server to socketPath: on a private name first, made 0600 and then renamed into place,
 * so the socket is never reachable with a wider mode. Returns the bound port for unbind().
 */
async function bindSocket(server: Server, socketPath: string): Promise<string> {
  const tmp = mkdtempSync(join(dirname(socketPath), ".nkit-sock-"));
  const port = `unix:${join(tmp, "s")}`;
  try {
    await new Promise<void>((resolve, reject) => {
      server.bindAsync(port, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()));
    });
    try {
      chmodSync(join(tmp, "s"), 0o600);
      renameSync(join(tmp, "s"), socketPath);
    } catch (e) {
      server.unbind(port);
      throw e;
    }
    return port;
  } catch (e) {
    throw new NkitError("NKIT_INTERNAL", `cannot serve the API on ${socketPath}: ${(e as Error).message}`, {
      cause: e,
    });
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

export async function startApiServer(ctx: ApiContext, socketPath: string): Promise<ApiServer> {
  const services = apiServices();
  const impl = implementation(ctx);
  const server = new Server({ "grpc.max_receive_message_length": 4 * 1024 * 1024 });
  server.addService({ ...services.nkit }, impl.nkit);
  server.addService({ ...services.admin }, impl.admin);
  removeStaleSocket(socketPath);
  let port: string;
  try {
    port = await bindSocket(server, socketPath);
  } catch (e) {
    server.forceShutdown();
    throw e;
  }
  ctx.log.info({ socket: socketPath }, "API listening");
  let closed = false;
  return {
    socketPath,
    ensureListening: async () => {
      if (closed || existsSync(socketPath)) return false;
      mkdirSync(dirname(socketPath), { recursive: true, mode: 0o755 });
      const next = await bindSocket(server, socketPath);
      server.unbind(port);
      port = next;
      return true;
    },
    close: async () => {
      closed = true;
      impl.endStreams();
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2000);
        server.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      });
      rmSync(socketPath, { force: true });
    },
  };
}
