// Scrape-time metrics of a running nkitd: BPF datapath counters per endpoint and reason, endpoint
// and IPAM gauges. Registered by the host services at start, removed at stop.
import { readCounters } from "../datapath/map-views.js";
import { reasonName } from "../datapath/reasons.js";
import { VERSION } from "../version.js";
import type { MetricFamily, Registry } from "./registry.js";

export interface CollectorSource {
  bpffsDir: string;
  mode: string;
  endpoints(): { id: string; epNum: number }[];
  ipamUsage(): { cidr: string; family: number; size: bigint; used: number }[];
  startedAt: Date;
}

export function datapathFamilies(src: CollectorSource): MetricFamily[] {
  const eps = src.endpoints();
  const byNum = new Map(eps.map((e) => [e.epNum, e.id]));
  const label = (n: number): string => (n === 0 ? "" : (byNum.get(n) ?? `#${n}`));
  const rows = readCounters(src.bpffsDir);
  const packets: MetricFamily = {
    name: "nkit_datapath_packets_total",
    help: "Packets seen by the BPF datapath, by endpoint and forwarding/drop reason",
    type: "counter",
    samples: [],
  };
  const bytes: MetricFamily = {
    name: "nkit_datapath_bytes_total",
    help: "Bytes seen by the BPF datapath, by endpoint and forwarding/drop reason",
    type: "counter",
    samples: [],
  };
  for (const r of rows) {
    const labels = { endpoint: label(r.epId), reason: reasonName(r.reason) };
    packets.samples.push({ labels, value: r.packets });
    bytes.samples.push({ labels, value: r.bytes });
  }
  const usage = src.ipamUsage();
  return [
    packets,
    bytes,
    {
      name: "nkit_endpoints",
      help: "Endpoints wired on this host",
      type: "gauge",
      samples: [{ labels: { mode: src.mode }, value: eps.length }],
    },
    {
      name: "nkit_ipam_addresses_used",
      help: "Addresses allocated from each pod CIDR",
      type: "gauge",
      samples: usage.map((u) => ({ labels: { cidr: u.cidr, family: String(u.family) }, value: u.used })),
    },
    {
      name: "nkit_ipam_addresses_capacity",
      help: "Usable addresses in each pod CIDR",
      type: "gauge",
      samples: usage.map((u) => ({ labels: { cidr: u.cidr, family: String(u.family) }, value: u.size })),
    },
    {
      name: "nkit_build_info",
      help: "nkitd version and datapath mode",
      type: "gauge",
      samples: [{ labels: { version: VERSION, datapath: src.mode }, value: 1 }],
    },
    {
      name: "nkit_start_time_seconds",
      help: "Start time of nkitd since the Unix epoch",
      type: "gauge",
      samples: [{ labels: {}, value: Math.floor(src.startedAt.getTime() / 1000) }],
    },
  ];
}

export function registerDatapathCollector(registry: Registry, src: CollectorSource): () => void {
  return registry.addCollector(() => datapathFamilies(src));
}

/** The service load-balancer as the metrics see it (no dependency on src/services). */
export interface ServiceMetricsSource {
  services(): {
    name: string;
    source: string;
    frontends: { frontend: string; backends: { backend: string; connections: bigint }[] }[];
  }[];
  /** Socket-hook outcomes by reason (translated, reversed, no-backend, ...). */
  counters(): Record<string, bigint>;
}

export function serviceFamilies(src: ServiceMetricsSource): MetricFamily[] {
  const services = src.services();
  const bySource = new Map<string, number>();
  for (const s of services) bySource.set(s.source, (bySource.get(s.source) ?? 0) + 1);
  const backends: MetricFamily = {
    name: "nkit_service_backends",
    help: "Backends of each service frontend (0 = connections are refused)",
    type: "gauge",
    samples: [],
  };
  const conns: MetricFamily = {
    name: "nkit_service_backend_connections_total",
    help: "Connections (socket hooks) and flows (per packet) sent to each backend since it took its slot",
    type: "counter",
    samples: [],
  };
  for (const s of services) {
    for (const f of s.frontends) {
      backends.samples.push({ labels: { service: s.name, frontend: f.frontend }, value: f.backends.length });
      for (const b of f.backends) {
        conns.samples.push({
          labels: { service: s.name, frontend: f.frontend, backend: b.backend },
          value: b.connections,
        });
      }
    }
  }
  return [
    {
      name: "nkit_services",
      help: "Services load-balanced on this host, by source",
      type: "gauge",
      samples: [...bySource].map(([source, n]) => ({ labels: { source }, value: n })),
    },
    backends,
    conns,
    {
      name: "nkit_lb_socket_total",
      help: "Socket load-balancer decisions by reason (per connect/sendmsg/recvmsg/getpeername)",
      type: "counter",
      samples: Object.entries(src.counters()).map(([reason, n]) => ({ labels: { reason }, value: n })),
    },
  ];
}

export function registerServiceCollector(registry: Registry, src: ServiceMetricsSource): () => void {
  return registry.addCollector(() => serviceFamilies(src));
}

export function registerNatCollector(
  registry: Registry,
  src: { flowCounts(): Record<string, number> },
): () => void {
  return registry.addCollector(() => [
    {
      name: "nkit_nat_flows",
      help: "Flows masquerade has translated and still tracks, by protocol",
      type: "gauge",
      samples: Object.entries(src.flowCounts()).map(([protocol, n]) => ({ labels: { protocol }, value: n })),
    },
  ]);
}
