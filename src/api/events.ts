// Datapath events for `nkit monitor`: the nk_events ring buffer is consumed (by the addon's
// background thread) only while at least one subscriber listens; events older than a subscriber's
// start are skipped, so a ring that filled up while nobody listened does not replay stale drops.
import { join } from "node:path";
import { openPinned } from "../bpf/handle.js";
import { type DatapathEvent, datapathEvent, EVENTS_MAP, EventType } from "../bpf/shared.js";
import { reasonName } from "../datapath/reasons.js";
import type { Logger } from "../log.js";
import { countLostEvents } from "../metrics/index.js";
import { bpfAddon, type FdHandle } from "../native/bpf.js";
import { type RingbufHandle, ringbufAddon, splitRecords } from "../native/ringbuf.js";
import { formatAddr } from "./maps.js";
import type * as T from "./types.js";

export interface EventFilter {
  /** Only events counted against this endpoint number. */
  epNum?: number;
  /** Only these reason codes. */
  reasons?: ReadonlySet<number>;
}

interface Subscriber {
  since: bigint;
  filter: EventFilter;
  deliver: (e: T.Event) => void;
}

/** Converts a raw record (monotonic clock) into the API event. */
export function toApiEvent(
  e: DatapathEvent,
  endpointOf: (epNum: number) => string | undefined,
  lostBefore = 0,
): T.Event {
  const nowMono = process.hrtime.bigint();
  const ageMs = Number(nowMono - e.ts_ns) / 1e6;
  return {
    type: e.type === EventType.DROP ? "drop" : `type_${e.type}`,
    time: new Date(Date.now() - Math.max(0, ageMs)).toISOString(),
    monotonicNs: e.ts_ns.toString(),
    reason: reasonName(e.reason),
    reasonCode: e.reason,
    epNum: e.ep_id,
    endpointId: (e.ep_id && endpointOf(e.ep_id)) || "",
    ifindex: e.ifindex,
    family: e.family,
    src: e.family ? formatAddr(e.family, e.family === 4 ? e.src.subarray(0, 4) : e.src) : "",
    dst: e.family ? formatAddr(e.family, e.family === 4 ? e.dst.subarray(0, 4) : e.dst) : "",
    protocol: e.protocol,
    length: e.len,
    lostBefore,
  };
}

export class EventHub {
  private readonly subs = new Set<Subscriber>();
  private map: FdHandle | undefined;
  private rb: RingbufHandle | undefined;
  private closed = false;

  constructor(
    private readonly bpffsDir: string,
    private readonly endpointOf: (epNum: number) => string | undefined,
    private readonly log?: Logger,
  ) {}

  /** Starts delivering matching events; returns the unsubscribe function. */
  subscribe(filter: EventFilter, deliver: (e: T.Event) => void): () => void {
    if (this.closed) throw new Error("event hub is closed");
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
    return this.rb !== undefined;
  }

  private start(): void {
    if (this.rb) return;
    const addon = bpfAddon();
    const map = openPinned(join(this.bpffsDir, EVENTS_MAP), "map");
    try {
      this.rb = ringbufAddon().ringbufOpen(map, (batch, _records, lost) => this.onBatch(batch, lost));
      this.map = map;
    } catch (e) {
      addon.fdClose(map);
      throw e;
    }
    this.log?.debug("monitor: consuming datapath events");
  }

  private stop(): void {
    if (this.rb) ringbufAddon().ringbufClose(this.rb);
    this.rb = undefined;
    if (this.map) bpfAddon().fdClose(this.map);
    this.map = undefined;
    this.log?.debug("monitor: stopped consuming datapath events");
  }

  private onBatch(batch: Buffer, lost: number): void {
    countLostEvents(lost);
    let pendingLost = lost;
    for (const rec of splitRecords(batch)) {
      if (rec.length < datapathEvent.size) continue;
      const raw = datapathEvent.decode(rec);
      let ev: T.Event | undefined;
      for (const s of this.subs) {
        if (raw.ts_ns < s.since) continue;
        if (s.filter.epNum !== undefined && raw.ep_id !== s.filter.epNum) continue;
        if (s.filter.reasons && s.filter.reasons.size > 0 && !s.filter.reasons.has(raw.reason)) continue;
        ev ??= toApiEvent(raw, this.endpointOf, pendingLost);
        s.deliver(ev);
      }
      pendingLost = 0;
    }
  }

  close(): void {
    this.closed = true;
    this.subs.clear();
    this.stop();
  }
}
