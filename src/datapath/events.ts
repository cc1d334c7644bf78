// Datapath events (the nk_events ring buffer): the ring is consumed only while at least one
// subscriber listens; events older than a subscriber's start are skipped, so a ring that filled up
// while nobody listened does not replay stale drops. The ring's handle comes from the loaded
// datapath object, so events flow from the ring those programs write, whatever is pinned.
import { type DatapathEvent, datapathEvent } from "../bpf/datapath.js";
import type { RingBuffer, RingBufferMap } from "../bpf/ringbuf.js";
import { ClosedError } from "../errors.js";
import type { Logger } from "../log.js";

interface EventFilter {
  /** Only events counted against this endpoint number. */
  epNum?: number;
  /** Only these reason codes. */
  reasons?: ReadonlySet<number>;
}

/** Gets a matching event and how many events the ring lost just before it (0 mostly). */
type EventSink = (e: DatapathEvent, lostBefore: number) => void;

interface Subscriber {
  since: bigint;
  filter: EventFilter;
  deliver: EventSink;
}

interface DatapathEventsOptions {
  log?: Logger;
  /** Told of every loss (records the consumer fell behind on), e.g. to count it in the metrics. */
  onLost?: (n: number) => void;
}

function matches(s: Subscriber, e: DatapathEvent): boolean {
  if (e.ts_ns < s.since) return false;
  if (s.filter.epNum !== undefined && e.ep_id !== s.filter.epNum) return false;
  return !(s.filter.reasons && s.filter.reasons.size > 0 && !s.filter.reasons.has(e.reason));
}

export class DatapathEvents {
  private readonly subs = new Set<Subscriber>();
  private consumer: RingBuffer | undefined;
  private closed = false;

  /** Takes over `ring` (nk_events of the datapath object), closing it with the hub. */
  constructor(
    private readonly ring: RingBufferMap,
    private readonly opts: DatapathEventsOptions = {},
  ) {}

  /** Starts delivering matching events; returns the unsubscribe function. */
  subscribe(filter: EventFilter, deliver: EventSink): () => void {
    if (this.closed) throw new ClosedError("event hub");
    const sub: Subscriber = { since: process.hrtime.bigint(), filter, deliver };
    this.subs.add(sub);
    try {
      this.start();
    } catch (e) {
      this.subs.delete(sub);
      throw e;
    }
    return () => {
      this.subs.delete(sub);
      if (this.subs.size === 0) this.stop();
    };
  }

  get consuming(): boolean {
    return this.consumer !== undefined;
  }

  private start(): void {
    if (this.consumer) return;
    this.consumer = this.ring.consume((records, lost) => this.onRecords(records, lost));
    this.opts.log?.debug("monitor: consuming datapath events");
  }

  private stop(): void {
    this.consumer?.close();
    this.consumer = undefined;
    this.opts.log?.debug("monitor: stopped consuming datapath events");
  }

  private onRecords(records: Buffer[], lost: number): void {
    if (lost > 0) this.opts.onLost?.(lost);
    let pendingLost = lost;
    for (const rec of records) {
      if (rec.length < datapathEvent.size) continue;
      const e = datapathEvent.decode(rec);
      for (const s of this.subs) if (matches(s, e)) s.deliver(e, pendingLost);
      pendingLost = 0;
    }
  }

  close(): void {
    this.closed = true;
    this.subs.clear();
    this.stop();
    this.ring.close();
  }
}
