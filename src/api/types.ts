// TS shapes of proto/nkit/v1/nkit.proto messages as protobufjs reflection produces them
// (camelCase fields, uint64 as decimal strings, every field present after decoding).
import type { PinnedMap } from "../bpf/map-views.js";
import type { WiredEndpoint } from "../datapath/endpoint.js";

export type Empty = Record<string, never>;

export interface Probe {
  name: string;
  supported: boolean;
  reason: string;
  need: string;
}

export interface Pool {
  cidr: string;
  family: number;
  /** uint64 as a decimal string */
  size: string;
  used: number;
}

export interface StatusResponse {
  version: string;
  datapathMode: string;
  uptimeSeconds: number;
  endpointCount: number;
  servicesEnabled: boolean;
  serviceCount: number;
  frontendCount: number;
  pools: Pool[];
  probes: Probe[];
  uplinks: string[];
  pid: number;
  startedAt: string;
  metricsListen: string;
  bpffsDir: string;
  stateDir: string;
  /** Absent when nkitd follows no Nomad. */
  nomad?: NomadSync;
  cluster?: NomadCluster;
  endpointProblems: EndpointProblem[];
  /** Absent when nri.enabled is false. */
  nri?: NriStatus;
}

export interface NriStatus {
  socket: string;
  connected: boolean;
  synchronized: boolean;
  lastError: string;
  runtime: string;
}

export interface NomadSync {
  address: string;
  connected: boolean;
  lastError: string;
  syncedAt: string;
  services: number;
  registrations: number;
}

export interface EndpointProblem {
  id: string;
  problem: string;
}

export interface NomadCluster {
  node: string;
  podCidrs: string[];
  connected: boolean;
  lastError: string;
  syncedAt: string;
  nodes: number;
}

export interface Addresses {
  ipv4: string;
  ipv6: string;
}

/** The datapath's endpoint as the API carries it: every field of it, addresses "" when absent. */
export type Endpoint = Omit<WiredEndpoint, "mode" | "addresses"> & { mode: string; addresses: Addresses };

export interface Counter {
  reason: string;
  reasonCode: number;
  drop: boolean;
  packets: string;
  bytes: string;
}

export interface ListEndpointsResponse {
  endpoints: Endpoint[];
}

export interface GetEndpointRequest {
  id: string;
}

export interface GetEndpointResponse {
  endpoint: Endpoint;
  counters: Counter[];
}

export interface Allocation {
  id: string;
  ipv4: string;
  ipv6: string;
}

export interface IpamResponse {
  pools: Pool[];
  allocations: Allocation[];
}

/** message MapInfo: the catalog's view of a pinned map, sent as is. */
export type MapInfo = PinnedMap;

export interface ListMapsResponse {
  maps: MapInfo[];
}

export interface DumpMapRequest {
  name: string;
}

export interface MapEntry {
  keyJson: string;
  valueJson: string;
}

export interface DumpMapResponse {
  map: MapInfo;
  entries: MapEntry[];
}

export interface MetricsResponse {
  text: string;
}

export interface MonitorRequest {
  endpointId: string;
  reasons: string[];
}

export interface Event {
  type: string;
  time: string;
  monotonicNs: string;
  reason: string;
  reasonCode: number;
  epNum: number;
  endpointId: string;
  ifindex: number;
  family: number;
  src: string;
  dst: string;
  protocol: number;
  length: number;
  lostBefore: number;
}

export interface WireEndpointRequest {
  id: string;
  netnsPath: string;
  ifName: string;
  addresses: Addresses;
  labels: Record<string, string>;
}

export interface UnwireEndpointRequest {
  id: string;
}

export interface UnwireEndpointResponse {
  removed: boolean;
}

export interface ServicePort {
  port: number;
  protocol: string;
  targetPort: number;
}

export interface Backend {
  address: string;
  port: number;
}

export interface FrontendBackend extends Backend {
  /** uint64 as a decimal string. */
  connections: string;
}

export interface Frontend {
  vip: string;
  port: number;
  protocol: string;
  backends: FrontendBackend[];
  external: boolean;
}

export interface Service {
  name: string;
  vip: string;
  ports: ServicePort[];
  backends: Backend[];
  selector: Record<string, string>;
  affinity: string;
  affinityTimeoutSeconds: number;
  source: string;
  origin: string;
  frontends: Frontend[];
  /** Reachable per packet from other hosts (uplink ingress), besides the socket hooks. */
  external: boolean;
}

export interface ListServicesResponse {
  services: Service[];
}

export interface GetServiceRequest {
  name: string;
}

export interface AddServiceRequest {
  service: Service;
}

export interface DeleteServiceRequest {
  name: string;
}

export interface NatFlow {
  protocol: string;
  pod: string;
  translated: string;
  remote: string;
  idleSeconds: number;
}

export interface ListNatResponse {
  flows: NatFlow[];
  enabled: boolean;
}

export interface NodeRoute {
  podCidr: string;
  via: string;
  state: string;
}

export interface Node {
  name: string;
  addresses: string[];
  podCidrs: string[];
  source: string;
  routes: NodeRoute[];
  self: boolean;
  heartbeatAt: string;
}

export interface ForgetNodeRequest {
  name: string;
}

export interface ForgetNodeResponse {
  released: boolean;
}

export interface LeaveClusterRequest {
  force: boolean;
}

export interface LeaveClusterResponse {
  podCidrs: string[];
}

export interface ListNodesResponse {
  nodes: Node[];
}
