// nkit's metrics on prom-client: the text nkitd serves, the process registry's instruments, the
// scrape-time collectors, and the metrics HTTP endpoint (loopback, ephemeral port).
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { registerDatapathCollector, registerServiceCollector } from "../../src/metrics/collectors.js";
import { parseListen, startMetricsServer } from "../../src/metrics/http.js";
import { nriMetrics, registry, timeWiring, wiringObservations } from "../../src/metrics/index.js";
import { VERSION } from "../../src/version.js";

describe("metrics registry", () => {
  it("renders counters, gauges and histograms in the text exposition format", async () => {
    // prom-client renders families in registration order.
    const r = new Registry();
    new Counter({
      name: "t_big_total",
      help: "Big",
      labelNames: ["q"],
      registers: [r],
      collect() {
        this.reset();
        this.inc({ q: 'a"b\\c' }, Number(2n ** 64n - 1n));
      },
    });
    const c = new Counter({ name: "t_events_total", help: "Events", labelNames: ["event"], registers: [r] });
    c.inc({ event: "RunPodSandbox" });
    c.inc({ event: "RunPodSandbox" }, 2);
    const h = new Histogram({
      name: "t_seconds",
      help: "Latency",
      labelNames: ["op"],
      buckets: [0.01, 0.1],
      registers: [r],
    });
    h.observe({ op: "wire" }, 0.005);
    h.observe({ op: "wire" }, 0.05);
    h.observe({ op: "wire" }, 3);
    new Gauge({ name: "t_used", help: 'Used "addresses"', labelNames: ["cidr"], registers: [r] }).set(
      { cidr: "10.0.0.0/24" },
      5,
    );
    // prom-client's form: a blank line between families, "le" first in a bucket's labels, and u64
    // counters as the doubles Prometheus stores anyway (2^64-1 prints as 18446744073709552000).
    expect(await r.metrics()).toBe(
      [
        "# HELP t_big_total Big",
        "# TYPE t_big_total counter",
        't_big_total{q="a\\"b\\\\c"} 18446744073709552000',
        "",
        "# HELP t_events_total Events",
        "# TYPE t_events_total counter",
        't_events_total{event="RunPodSandbox"} 3',
        "",
        "# HELP t_seconds Latency",
        "# TYPE t_seconds histogram",
        't_seconds_bucket{le="0.01",op="wire"} 1',
        't_seconds_bucket{le="0.1",op="wire"} 2',
        't_seconds_bucket{le="+Inf",op="wire"} 3',
        't_seconds_sum{op="wire"} 3.055',
        't_seconds_count{op="wire"} 3',
        "",
        '# HELP t_used Used "addresses"',
        "# TYPE t_used gauge",
        't_used{cidr="10.0.0.0/24"} 5',
        "",
      ].join("\n"),
    );
    expect(() => c.inc({}, -1)).toThrow(/not possible to decrease/);
  });

  it("exports NRI counters and wiring timings on the process registry", async () => {
    nriMetrics.event("RunPodSandbox");
    nriMetrics.error("RunPodSandbox");
    await timeWiring("wire", async () => "ok");
    await expect(timeWiring("unwire", () => Promise.reject(new Error("x")))).rejects.toThrow("x");
    expect(await wiringObservations("wire", true)).toBe(1);
    expect(await wiringObservations("unwire", false)).toBe(1);
    const text = await registry.metrics();
    expect(text).toMatch(/nkit_nri_events_total\{event="RunPodSandbox"\} 1/);
    expect(text).toMatch(/nkit_nri_errors_total\{event="RunPodSandbox"\} 1/);
    expect(text).toMatch(/nkit_endpoint_wiring_duration_seconds_count\{op="unwire",result="error"\} 1/);
  });

  it("reads the scrape-time sources only when scraped, once per scrape, and unregisters", async () => {
    const r = new Registry();
    let reads = 0;
    let services = [
      {
        name: "web",
        source: "config",
        frontends: [
          { frontend: "10.96.0.1:80/tcp", backends: [{ backend: "10.1.0.2:8080", connections: 7n }] },
        ],
      },
      { name: "dns", source: "api", frontends: [{ frontend: "10.96.0.10:53/udp", backends: [] }] },
    ];
    const remove = registerServiceCollector(r, {
      services: () => {
        reads++;
        return services;
      },
      counters: () => ({ translated: 2n ** 53n + 1n }),
    });
    expect(reads).toBe(0);
    const text = await r.metrics();
    expect(reads).toBe(1);
    expect(text).toContain('nkit_services{source="config"} 1\nnkit_services{source="api"} 1\n');
    expect(text).toContain('nkit_service_backends{service="dns",frontend="10.96.0.10:53/udp"} 0\n');
    expect(text).toContain(
      'nkit_service_backend_connections_total{service="web",frontend="10.96.0.1:80/tcp",backend="10.1.0.2:8080"} 7\n',
    );
    expect(text).toContain('nkit_lb_socket_total{reason="translated"} 9007199254740992\n');
    // A service that is gone is gone from the next scrape.
    services = services.slice(1);
    const next = await r.metrics();
    expect(reads).toBe(2);
    expect(next).not.toContain('service="web"');
    expect(next).not.toContain('source="config"');
    remove();
    expect(await r.metrics()).not.toContain("nkit_");
    expect(reads).toBe(2);
  });

  it("exports the endpoint, IPAM and build gauges", async () => {
    const r = new Registry();
    const remove = registerDatapathCollector(r, {
      bpffsDir: "/nonexistent/nkit-bpffs", // no counters map: no datapath samples
      mode: "veth",
      endpoints: () => [{ id: "ep1", epNum: 1 }],
      ipamUsage: () => [
        { cidr: "10.1.0.0/24", family: 4, size: 254n, used: 1 },
        { cidr: "fd00:1::/64", family: 6, size: 2n ** 64n - 1n, used: 1 },
      ],
      startedAt: new Date(1_700_000_000_500),
    });
    const text = await r.metrics();
    remove();
    expect(text).toContain("# TYPE nkit_datapath_packets_total counter\n");
    expect(text).not.toMatch(/^nkit_datapath_packets_total/m);
    expect(text).toContain('nkit_endpoints{mode="veth"} 1\n');
    expect(text).toContain('nkit_ipam_addresses_used{cidr="10.1.0.0/24",family="4"} 1\n');
    expect(text).toContain('nkit_ipam_addresses_capacity{cidr="10.1.0.0/24",family="4"} 254\n');
    expect(text).toContain(
      'nkit_ipam_addresses_capacity{cidr="fd00:1::/64",family="6"} 18446744073709552000\n',
    );
    expect(text).toContain(`nkit_build_info{version="${VERSION}",datapath="veth"} 1\n`);
    expect(text).toContain("nkit_start_time_seconds 1700000000\n");
  });

  it("serves /metrics over HTTP on loopback", async () => {
    expect(parseListen("[::1]:9965")).toEqual({ host: "::1", port: 9965 });
    expect(() => parseListen("nope")).toThrow(/host:port/);
    const s = await startMetricsServer("127.0.0.1:0", async () => "x_total 1\n");
    try {
      const res = await fetch(`http://${s.address}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
      expect(await res.text()).toBe("x_total 1\n");
      expect((await fetch(`http://${s.address}/other`)).status).toBe(404);
      expect((await fetch(`http://${s.address}/metrics`, { method: "POST" })).status).toBe(405);
    } finally {
      await s.close();
    }
  });
});
