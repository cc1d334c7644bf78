// A small Prometheus registry (text exposition format 0.0.4): counters, gauges and histograms with
// labels, plus collectors that produce samples at scrape time (BPF counters, IPAM usage). One
// default registry per process, so any module (NRI plugin, CNI endpoint, API) can record without
// being handed an object: see src/metrics/index.ts for the instruments nkit defines.
import { InvalidArgumentError } from "../errors.js";

export type Labels = Readonly<Record<string, string>>;

export interface Sample {
  labels: Labels;
  value: number | bigint;
  /** Suffix after the family name, e.g. "_bucket"; default none. */
  suffix?: string;
}

export interface MetricFamily {
  name: string;
  help: string;
  type: "counter" | "gauge" | "histogram";
  samples: Sample[];
}

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

function key(labels: Labels): string {
  return JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function fmtValue(v: number | bigint): string {
  if (typeof v === "bigint") return v.toString();
  if (Number.isNaN(v)) return "NaN";
  if (v === Number.POSITIVE_INFINITY) return "+Inf";
  if (v === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(v);
}

function fmtLabels(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
}

export function renderFamilies(families: readonly MetricFamily[]): string {
  const out: string[] = [];
  for (const f of families) {
    out.push(`# HELP ${f.name} ${f.help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`);
    out.push(`# TYPE ${f.name} ${f.type}`);
    for (const s of f.samples)
      out.push(`${f.name}${s.suffix ?? ""}${fmtLabels(s.labels)} ${fmtValue(s.value)}`);
  }
  return `${out.join("\n")}\n`;
}

abstract class Instrument {
  constructor(
    readonly name: string,
    readonly help: string,
  ) {
    if (!NAME_RE.test(name))
      throw new InvalidArgumentError(`invalid metric name ${name}: use [a-zA-Z_:][a-zA-Z0-9_:]*`);
  }
  abstract collect(): MetricFamily;
}

export class Counter extends Instrument {
  private readonly values = new Map<string, { labels: Labels; value: number }>();
  inc(labels: Labels = {}, by = 1): void {
    if (by < 0)
      throw new InvalidArgumentError(`counter ${this.name} cannot decrease (got ${by}); use a gauge`);
    const k = key(labels);
    const cur = this.values.get(k);
    if (cur) cur.value += by;
    else this.values.set(k, { labels: { ...labels }, value: by });
  }
  get(labels: Labels = {}): number {
    return this.values.get(key(labels))?.value ?? 0;
  }
  collect(): MetricFamily {
    return {
      name: this.name,
      help: this.help,
      type: "counter",
      samples: [...this.values.values()].map((v) => ({ labels: v.labels, value: v.value })),
    };
  }
}

export class Gauge extends Instrument {
  private readonly values = new Map<string, { labels: Labels; value: number }>();
  set(labels: Labels, value: number): void {
    this.values.set(key(labels), { labels: { ...labels }, value });
  }
  collect(): MetricFamily {
    return {
      name: this.name,
      help: this.help,
      type: "gauge",
      samples: [...this.values.values()].map((v) => ({ labels: v.labels, value: v.value })),
    };
  }
}

export class Histogram extends Instrument {
  private readonly series = new Map<
    string,
    { labels: Labels; counts: number[]; sum: number; count: number }
  >();
  constructor(
    name: string,
    help: string,
    readonly buckets: readonly number[],
  ) {
    super(name, help);
  }
  observe(labels: Labels, value: number): void {
    const k = key(labels);
    let s = this.series.get(k);
    if (!s) {
      s = { labels: { ...labels }, counts: this.buckets.map(() => 0), sum: 0, count: 0 };
      this.series.set(k, s);
    }
    this.buckets.forEach((b, i) => {
      if (value <= b && s) s.counts[i] = (s.counts[i] ?? 0) + 1;
    });
    s.sum += value;
    s.count++;
  }
  count(labels: Labels): number {
    return this.series.get(key(labels))?.count ?? 0;
  }
  collect(): MetricFamily {
    const samples: Sample[] = [];
    for (const s of this.series.values()) {
      this.buckets.forEach((b, i) => {
        samples.push({ labels: { ...s.labels, le: String(b) }, value: s.counts[i] ?? 0, suffix: "_bucket" });
      });
      samples.push({ labels: { ...s.labels, le: "+Inf" }, value: s.count, suffix: "_bucket" });
      samples.push({ labels: s.labels, value: s.sum, suffix: "_sum" });
      samples.push({ labels: s.labels, value: s.count, suffix: "_count" });
    }
    return { name: this.name, help: this.help, type: "histogram", samples };
  }
}

/** Produces families at scrape time (e.g. from BPF maps). */
export type Collector = () => MetricFamily[];

export class Registry {
  private readonly instruments = new Map<string, Instrument>();
  private readonly collectors = new Set<Collector>();

  private add<I extends Instrument>(i: I): I {
    const existing = this.instruments.get(i.name);
    if (existing) {
      if (existing.constructor !== i.constructor)
        throw new InvalidArgumentError(`metric ${i.name} registered twice with different types`);
      return existing as I;
    }
    this.instruments.set(i.name, i);
    return i;
  }

  counter(name: string, help: string): Counter {
    return this.add(new Counter(name, help));
  }
  gauge(name: string, help: string): Gauge {
    return this.add(new Gauge(name, help));
  }
  histogram(name: string, help: string, buckets: readonly number[]): Histogram {
    return this.add(new Histogram(name, help, buckets));
  }

  /** Adds a scrape-time collector; returns a function that removes it. */
  addCollector(c: Collector): () => void {
    this.collectors.add(c);
    return () => this.collectors.delete(c);
  }

  collect(): MetricFamily[] {
    const fams = [...this.instruments.values()].map((i) => i.collect());
    for (const c of this.collectors) fams.push(...c());
    return fams.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  render(): string {
    return renderFamilies(this.collect());
  }
}
