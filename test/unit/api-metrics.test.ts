// The Prometheus registry and the metrics HTTP endpoint (loopback, ephemeral port).
import { describe, expect, it } from "vitest";
import { parseListen, startMetricsServer } from "../../src/metrics/http.js";
import { nriMetrics, registry, timeWiring, wiringObservations } from "../../src/metrics/index.js";
import { Registry } from "../../src/metrics/registry.js";

describe("metrics registry", () => {
  it("renders counters, gauges and histograms in the text exposition format", () => {
    const r = new Registry();
    const c = r.counter("t_events_total", "Events");
    c.inc({ event: "RunPodSandbox" });
    c.inc({ event: "RunPodSandbox" }, 2);
    r.gauge("t_used", 'Used "addresses"').set({ cidr: "10.0.0.0/24" }, 5);
    const h = r.histogram("t_seconds", "Latency", [0.01, 0.1]);
    h.observe({ op: "wire" }, 0.005);
    h.observe({ op: "wire" }, 0.05);
    h.observe({ op: "wire" }, 3);
    r.addCollector(() => [
      {
        name: "t_big_total",
        help: "Big",
        type: "counter",
        samples: [{ labels: { q: 'a"b\\c' }, value: 2n ** 64n - 1n }],
      },
    ]);
    expect(r.render()).toBe(
      [
        "# HELP t_big_total Big",
        "# TYPE t_big_total counter",
        't_big_total{q="a\\"b\\\\c"} 18446744073709551615',
        "# HELP t_events_total Events",
        "# TYPE t_events_total counter",
        't_events_total{event="RunPodSandbox"} 3',
        "# HELP t_seconds Latency",
        "# TYPE t_seconds histogram",
        't_seconds_bucket{op="wire",le="0.01"} 1',
        't_seconds_bucket{op="wire",le="0.1"} 2',
        't_seconds_bucket{op="wire",le="+Inf"} 3',
        't_seconds_sum{op="wire"} 3.055',
        't_seconds_count{op="wire"} 3',
        '# HELP t_used Used "addresses"',
        "# TYPE t_used gauge",
        't_used{cidr="10.0.0.0/24"} 5',
        "",
      ].join("\n"),
    );
    expect(() => c.inc({}, -1)).toThrow(/cannot decrease/);
  });

  it("exports NRI counters and wiring timings on the process registry", async () => {
    nriMetrics.event("RunPodSandbox");
    nriMetrics.error("RunPodSandbox");
    await timeWiring("wire", async () => "ok");
    await expect(timeWiring("unwire", () => Promise.reject(new Error("x")))).rejects.toThrow("x");
    expect(wiringObservations("wire", true)).toBe(1);
    expect(wiringObservations("unwire", false)).toBe(1);
    const text = registry.render();
    expect(text).toMatch(/nkit_nri_events_total\{event="RunPodSandbox"\} 1/);
    expect(text).toMatch(/nkit_nri_errors_total\{event="RunPodSandbox"\} 1/);
    expect(text).toMatch(/nkit_endpoint_wiring_duration_seconds_count\{op="unwire",result="error"\} 1/);
  });

  it("serves /metrics over HTTP on loopback", async () => {
    expect(parseListen("[::1]:9965")).toEqual({ host: "::1", port: 9965 });
    expect(() => parseListen("nope")).toThrow(/host:port/);
    const s = await startMetricsServer("127.0.0.1:0", () => "x_total 1\n");
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
