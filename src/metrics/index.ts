// nkit's metrics: the process-wide registry and the instruments other modules record into.
//
//   NRI plugin:      nriMetrics.event("RunPodSandbox"); nriMetrics.error("RunPodSandbox")
//   wiring callers:  await timeWiring("wire", () => endpoints.wire(req))   (or observeWiring)
//
// Scrape-time collectors (BPF counters, IPAM, endpoints) are added by src/metrics/collectors.ts when
// nkitd starts its host services.
import { Registry } from "./registry.js";

export {
  type Collector,
  Counter,
  Gauge,
  Histogram,
  type Labels,
  type MetricFamily,
  Registry,
} from "./registry.js";

export const registry = new Registry();

/** Wiring latency buckets (seconds): wiring is a few ms, NRI's budget is 2 s. */
export const WIRING_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5] as const;

const wiringDuration = registry.histogram(
  "nkit_endpoint_wiring_duration_seconds",
  "Time to wire or unwire an endpoint, by operation and result",
  WIRING_BUCKETS,
);

export type WiringOp = "wire" | "unwire";

/** Records one wiring operation's latency. */
export function observeWiring(op: WiringOp, seconds: number, ok: boolean): void {
  wiringDuration.observe({ op, result: ok ? "ok" : "error" }, seconds);
}

/** Runs fn and records its latency under op. */
export async function timeWiring<T>(op: WiringOp, fn: () => Promise<T>): Promise<T> {
  const start = process.hrtime.bigint();
  let ok = false;
  try {
    const r = await fn();
    ok = true;
    return r;
  } finally {
    observeWiring(op, Number(process.hrtime.bigint() - start) / 1e9, ok);
  }
}

export function wiringObservations(op: WiringOp, ok: boolean): number {
  return wiringDuration.count({ op, result: ok ? "ok" : "error" });
}

const nriEvents = registry.counter("nkit_nri_events_total", "NRI events handled, by event");
const nriErrors = registry.counter("nkit_nri_errors_total", "NRI events that failed, by event");

/** Counters for the NRI plugin. */
export const nriMetrics = {
  event(event: string): void {
    nriEvents.inc({ event });
  },
  error(event: string): void {
    nriErrors.inc({ event });
  },
};

const monitorLost = registry.counter(
  "nkit_monitor_events_lost_total",
  "Datapath events lost before reaching a monitor client (ring buffer consumer too slow)",
);

export function countLostEvents(n: number): void {
  if (n > 0) monitorLost.inc({}, n);
}
