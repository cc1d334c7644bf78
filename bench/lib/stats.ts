export function median(xs: readonly number[]): number {
  return quantile(xs, 0.5);
}

export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo);
}

/** Latency summary in ms (wire/unwire/netns add timings of the datapath and VM benchmarks). */
export interface LatencyStats {
  n: number;
  p50_ms: number;
  p99_ms: number;
  mean_ms: number;
  min_ms: number;
  max_ms: number;
}

export function latencyStats(ms: readonly number[]): LatencyStats {
  return {
    n: ms.length,
    p50_ms: median(ms),
    p99_ms: quantile(ms, 0.99),
    mean_ms: ms.length ? ms.reduce((a, b) => a + b, 0) / ms.length : Number.NaN,
    min_ms: ms.length ? Math.min(...ms) : Number.NaN,
    max_ms: ms.length ? Math.max(...ms) : Number.NaN,
  };
}

export function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** a / b to 3 digits. */
export const ratio = (a: number, b: number): number => round(a / b, 3);
