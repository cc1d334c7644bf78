// nkit's metrics: the process-wide prom-client registry and the instruments other modules record into.
//
//   NRI plugin:      nriMetrics.event("RunPodSandbox"); nriMetrics.error("RunPodSandbox")
//   wiring callers:  await timeWiring("wire", () => endpoints.wire(req))   (or observeWiring)
//   CNI endpoint:    observeCniRequest("ADD", seconds, ok)
//
// Scrape-time collectors (BPF counters, IPAM, endpoints) are added by src/metrics/collectors.ts when
// nkitd starts its host services.
import { Counter, Histogram, Registry } from "prom-client";

// Our own registry, not prom-client's global one: only what nkit defines is exported, whatever else
// in the process might register there.
export const registry = new Registry();

/** Wiring latency buckets (seconds): wiring is a few ms, NRI's budget is 2 s. */
const WIRING_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5] as const;

const wiringDuration = new Histogram({
  name: "nkit_endpoint_wiring_duration_seconds",
  help: "Time to wire or unwire an endpoint, by operation and result",
  labelNames: ["op", "result"],
  buckets: [...WIRING_BUCKETS],
  registers: [registry],
});

type WiringOp = "wire" | "unwire";

const result = (ok: boolean): string => (ok ? "ok" : "error");

/** Records one wiring operation's latency. */
function observeWiring(op: WiringOp, seconds: number, ok: boolean): void {
  wiringDuration.observe({ op, result: result(ok) }, seconds);
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

/** Wiring operations recorded so far under op and result (the histogram's _count). */
export async function wiringObservations(op: WiringOp, ok: boolean): Promise<number> {
  const { name, values } = await wiringDuration.get();
  const count = values.find(
    (v) => v.metricName === `${name}_count` && v.labels.op === op && v.labels.result === result(ok),
  );
  return count?.value ?? 0;
}

const cniDuration = new Histogram({
  name: "nkit_cni_request_duration_seconds",
  help: "Time nkitd took to answer a CNI request from nkit-cni, by command and result",
  labelNames: ["command", "result"],
  buckets: [...WIRING_BUCKETS],
  registers: [registry],
});

/** Records one CNI request's latency as nkitd answered it (the plugin's exec and socket excluded). */
export function observeCniRequest(command: string, seconds: number, ok: boolean): void {
  cniDuration.observe({ command, result: result(ok) }, seconds);
}

const nriEvents = new Counter({
  name: "nkit_nri_events_total",
  help: "NRI events handled, by event",
  labelNames: ["event"],
  registers: [registry],
});
const nriErrors = new Counter({
  name: "nkit_nri_errors_total",
  help: "NRI events that failed, by event",
  labelNames: ["event"],
  registers: [registry],
});

/** Counters for the NRI plugin. */
export const nriMetrics = {
  event(event: string): void {
    nriEvents.inc({ event });
  },
  error(event: string): void {
    nriErrors.inc({ event });
  },
};

const monitorLost = new Counter({
  name: "nkit_monitor_events_lost_total",
  help: "Datapath events lost before reaching a monitor client (ring buffer consumer too slow)",
  registers: [registry],
});

export function countLostEvents(n: number): void {
  if (n > 0) monitorLost.inc(n);
}
