// Scrape-time metrics of a running nkitd: BPF datapath counters per endpoint and reason, endpoint
// and IPAM gauges, the service load-balancer and masquerade. Registered by the host services at
// start, removed at stop. Their values live in BPF maps and in the owners' state, so each metric
// reads them in prom-client's collect() callback: nothing is read while nobody scrapes.
import { Counter, Gauge, type Registry } from "prom-client";
import { readCounters } from "../datapath/map-views.js";
import { reasonName } from "../datapath/reasons.js";
import { VERSION } from "../version.js";

type Labels = Readonly<Record<string, string>>;

/** A metric whose samples are read from their source at each scrape. */
interface ScrapedMetric {
  type: "counter" | "gauge";
  name: string;
  help: string;
  labelNames: readonly string[];
  /** BPF counters are u64: they are exported as doubles, which is what Prometheus stores anyway. */
  samples(): { labels: Labels; value: number | bigint }[];
}

/** Registers metrics read at scrape time; returns a function that removes them. */
function registerScraped(registry: Registry, metrics: readonly ScrapedMetric[]): () => void {
  for (const m of metrics) {
    const config = { name: m.name, help: m.help, labelNames: m.labelNames, registers: [registry] };
    // reset() first: a label set that vanished from the source (an unwired endpoint, a deleted
    // service) must vanish from the scrape too.
    if (m.type === "counter") {
      new Counter({
        ...config,
        collect() {
          this.reset();
          for (const s of m.samples()) this.inc(s.labels, Number(s.value));
        },
      });
    } else {
      new Gauge({
        ...config,
        collect() {
          this.reset();
          for (const s of m.samples()) this.set(s.labels, Number(s.value));
        },
      });
    }
  }
  return () => {
    for (const m of metrics) registry.removeSingleMetric(m.name);
  };
}

/**
 * One read of a source for the several metrics built from it (packets and bytes from one pass over
 * the counters map). prom-client runs every metric's collect() in one synchronous pass per scrape,
 * so the snapshot is dropped at the next microtask; were that pass ever split, each metric would
 * just read again.
 */
function oncePerScrape<T>(read: () => T): () => T {
  let snapshot: { value: T } | undefined;
  return () => {
    if (!snapshot) {
      snapshot = { value: read() };
      queueMicrotask(() => {
        snapshot = undefined;
      });
    }
    return snapshot.value;
  };
}

interface CollectorSource {
  bpffsDir: string;
  mode: string;
  endpoints(): { id: string; epNum: number }[];
  ipamUsage(): { cidr: string; family: number; size: bigint; used: number }[];
  startedAt: Date;
}

export function registerDatapathCollector(registry: Registry, src: CollectorSource): () => void {
  const counters = oncePerScrape(() => {
    const byNum = new Map(src.endpoints().map((e) => [e.epNum, e.id]));
    const label = (n: number): string => (n === 0 ? "" : (byNum.get(n) ?? `#${n}`));
    return readCounters(src.bpffsDir).map((r) => ({
      labels: { endpoint: label(r.epId), reason: reasonName(r.reason) },
      packets: r.packets,
      bytes: r.bytes,
    }));
  });
  const usage = oncePerScrape(() =>
    src
      .ipamUsage()
      .map((u) => ({ labels: { cidr: u.cidr, family: String(u.family) }, used: u.used, size: u.size })),
  );
  return registerScraped(registry, [
    {
      type: "counter",
      name: "nkit_datapath_packets_total",
      help: "Packets seen by the BPF datapath, by endpoint and forwarding/drop reason",
      labelNames: ["endpoint", "reason"],
      samples: () => counters().map((c) => ({ labels: c.labels, value: c.packets })),
    },
    {
      type: "counter",
      name: "nkit_datapath_bytes_total",
      help: "Bytes seen by the BPF datapath, by endpoint and forwarding/drop reason",
      labelNames: ["endpoint", "reason"],
      samples: () => counters().map((c) => ({ labels: c.labels, value: c.bytes })),
    },
    {
      type: "gauge",
      name: "nkit_endpoints",
      help: "Endpoints wired on this host",
      labelNames: ["mode"],
      samples: () => [{ labels: { mode: src.mode }, value: src.endpoints().length }],
    },
    {
      type: "gauge",
      name: "nkit_ipam_addresses_used",
      help: "Addresses allocated from each pod CIDR",
      labelNames: ["cidr", "family"],
      samples: () => usage().map((u) => ({ labels: u.labels, value: u.used })),
    },
    {
      type: "gauge",
      name: "nkit_ipam_addresses_capacity",
      help: "Usable addresses in each pod CIDR",
      labelNames: ["cidr", "family"],
      samples: () => usage().map((u) => ({ labels: u.labels, value: u.size })),
    },
    {
      type: "gauge",
      name: "nkit_build_info",
      help: "nkitd version and datapath mode",
      labelNames: ["version", "datapath"],
      samples: () => [{ labels: { version: VERSION, datapath: src.mode }, value: 1 }],
    },
    {
      type: "gauge",
      name: "nkit_start_time_seconds",
      help: "Start time of nkitd since the Unix epoch",
      labelNames: [],
      samples: () => [{ labels: {}, value: Math.floor(src.startedAt.getTime() / 1000) }],
    },
  ]);
}

/** The service load-balancer as the metrics see it (no dependency on src/services). */
interface ServiceMetricsSource {
  services(): {
    name: string;
    source: string;
    frontends: { frontend: string; backends: { backend: string; connections: bigint }[] }[];
  }[];
  /** Socket-hook outcomes by reason (translated, reversed, no-backend, ...). */
  counters(): Record<string, bigint>;
}

export function registerServiceCollector(registry: Registry, src: ServiceMetricsSource): () => void {
  // services() reads the per-backend connection counters: once per scrape for all three metrics.
  const services = oncePerScrape(() => src.services());
  const frontends = () =>
    services().flatMap((s) => s.frontends.map((f) => ({ service: s.name, frontend: f.frontend, f })));
  return registerScraped(registry, [
    {
      type: "gauge",
      name: "nkit_services",
      help: "Services load-balanced on this host, by source",
      labelNames: ["source"],
      samples: () => {
        const bySource = new Map<string, number>();
        for (const s of services()) bySource.set(s.source, (bySource.get(s.source) ?? 0) + 1);
        return [...bySource].map(([source, n]) => ({ labels: { source }, value: n }));
      },
    },
    {
      type: "gauge",
      name: "nkit_service_backends",
      help: "Backends of each service frontend (0 = connections are refused)",
      labelNames: ["service", "frontend"],
      samples: () =>
        frontends().map(({ service, frontend, f }) => ({
          labels: { service, frontend },
          value: f.backends.length,
        })),
    },
    {
      type: "counter",
      name: "nkit_service_backend_connections_total",
      help: "Connections (socket hooks) and flows (per packet) sent to each backend since it took its slot",
      labelNames: ["service", "frontend", "backend"],
      samples: () =>
        frontends().flatMap(({ service, frontend, f }) =>
          f.backends.map((b) => ({
            labels: { service, frontend, backend: b.backend },
            value: b.connections,
          })),
        ),
    },
    {
      type: "counter",
      name: "nkit_lb_socket_total",
      help: "Socket load-balancer decisions by reason (per connect/sendmsg/recvmsg/getpeername)",
      labelNames: ["reason"],
      samples: () => Object.entries(src.counters()).map(([reason, n]) => ({ labels: { reason }, value: n })),
    },
  ]);
}

export function registerNatCollector(
  registry: Registry,
  src: { flowCounts(): Record<string, number> },
): () => void {
  return registerScraped(registry, [
    {
      type: "gauge",
      name: "nkit_nat_flows",
      help: "Flows masquerade has translated and still tracks, by protocol",
      labelNames: ["protocol"],
      samples: () =>
        Object.entries(src.flowCounts()).map(([protocol, n]) => ({ labels: { protocol }, value: n })),
    },
  ]);
}
