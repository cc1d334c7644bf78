// Keeps nkit's "nomad" services equal to Nomad's native service catalogue: a snapshot (every service
// of the configured namespaces and their registrations), then the Service event stream from the
// snapshot's index. Any error, a dropped stream, a Nomad restart or the periodic re-snapshot starts
// over with a fresh snapshot, which replaces everything: no duplicate or lost service survives a gap.
// Check results are polled (Nomad's events do not carry them): a backend whose check fails is taken
// out until it passes again. While Nomad is unreachable the last published services stay as they are.
import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "../log.js";
import type { ServiceSpec } from "../services/spec.js";
import type { IpPrefix } from "../util/ip.js";
import type { EventBatch, NomadClient, ServiceRegistration } from "./client.js";
import { nomadServiceSpecs } from "./service-specs.js";

export interface NomadServiceSyncOptions {
  client: NomadClient;
  /** A namespace, or "*" for every namespace the token can read. */
  namespace: string;
  serviceCIDRs: readonly IpPrefix[];
  /** Receives the full set of Nomad services on every change (replaces the previous set). */
  publish(specs: ServiceSpec[]): void;
  log?: Logger;
  /** How often check results are read; default 2 s. */
  checkIntervalMs?: number;
  /** A full re-snapshot this often even while the stream runs (events can be dropped); default 5 min. */
  resnapshotMs?: number;
  /** First retry delay after an error, doubled up to 30 s; default 1 s. */
  retryMs?: number;
  /** A stream without a heartbeat for this long is taken as dead; default 30 s. */
  silentStreamMs?: number;
}

export interface NomadSyncStatus {
  /** The last snapshot succeeded and the event stream is open. */
  connected: boolean;
  /** The last error (empty while connected). */
  lastError: string;
  /** When the services were last taken from Nomad (RFC 3339; empty before the first time). */
  syncedAt: string;
  services: number;
  registrations: number;
}

const MAX_RETRY_MS = 30_000;
const STOP_WAIT_MS = 3_000;

/** Whether p settles within ms. */
async function settlesWithin(p: Promise<unknown> | undefined, ms: number): Promise<boolean> {
  if (!p) return true;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([
      p.then(
        () => true as const,
        () => true as const,
      ),
      late,
    ]);
  } finally {
    clearTimeout(timer);
  }
}
const SILENT_STREAM_MS = 30_000;
/** An event stream open this long resets the retry delay. */
const STABLE_STREAM_MS = 10_000;

export class NomadServiceSync {
  private readonly regs = new Map<string, ServiceRegistration>();
  private unhealthy = new Set<string>();
  private index = 0;
  private abort = new AbortController();
  /** Aborted by stop(): ends a retry wait at once. */
  private readonly stopping = new AbortController();
  private stopped = false;
  private loop: Promise<void> | undefined;
  private checkTimer: NodeJS.Timeout | undefined;
  private published = "";
  private readonly state: NomadSyncStatus = {
    connected: false,
    lastError: "",
    syncedAt: "",
    services: 0,
    registrations: 0,
  };

  constructor(private readonly opts: NomadServiceSyncOptions) {}

  start(): void {
    this.loop = this.run();
    const poll = () => {
      this.checkTimer = setTimeout(() => {
        this.pollChecks().finally(() => {
          if (!this.stopped) poll();
        });
      }, this.opts.checkIntervalMs ?? 2000);
      this.checkTimer.unref();
    };
    poll();
  }

  get address(): string {
    return this.opts.client.address;
  }

  status(): NomadSyncStatus {
    return { ...this.state };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.checkTimer);
    this.stopping.abort();
    this.abort.abort();
    // Every wait of the loop is aborted or bounded (2 s per request); should a request still hang,
    // nkitd's shutdown does not wait for it (the process ends with its socket).
    if (!(await settlesWithin(this.loop, STOP_WAIT_MS))) {
      this.opts.log?.warn(
        { waitedMs: STOP_WAIT_MS },
        "Nomad service sync: a request to Nomad outlived stop; not waiting for it",
      );
    }
  }

  private async run(): Promise<void> {
    let retry = this.opts.retryMs ?? 1000;
    while (!this.stopped) {
      this.abort = new AbortController();
      const resnapshot = setTimeout(() => this.abort.abort(), this.opts.resnapshotMs ?? 300_000);
      try {
        await this.snapshot();
        this.state.connected = true;
        this.state.lastError = "";
        const following = Date.now();
        try {
          await this.follow(this.abort.signal);
        } finally {
          // A stream that ran a while earned a quick retry; one that fails at once (an event broker
          // that is off, a proxy cutting it) keeps backing off, so Nomad is not re-listed every second.
          if (Date.now() - following > STABLE_STREAM_MS) retry = this.opts.retryMs ?? 1000;
        }
      } catch (e) {
        if (this.stopped) break;
        const message = (e as Error).message;
        if (this.state.connected || this.state.lastError !== message) {
          this.opts.log?.warn({ err: e }, "Nomad service sync interrupted: keeping the last known services");
        }
        this.state.connected = false;
        this.state.lastError = message;
        await sleep(retry, undefined, { signal: this.stopping.signal }).catch(() => undefined);
        retry = Math.min(retry * 2, MAX_RETRY_MS);
      } finally {
        clearTimeout(resnapshot);
      }
    }
  }

  /** Every registration of every service, replacing what was known. */
  private async snapshot(): Promise<void> {
    const c = this.opts.client;
    const listing = await c.services(this.opts.namespace);
    let index = listing.index;
    const regs: ServiceRegistration[] = [];
    for (const ns of listing.body) {
      for (const s of ns.Services) {
        const r = await c.registrations(ns.Namespace, s.ServiceName);
        index = Math.max(index, r.index);
        regs.push(...r.body);
      }
    }
    this.regs.clear();
    for (const r of regs) this.regs.set(r.ID, r);
    this.index = index;
    this.state.syncedAt = new Date().toISOString();
    this.update();
  }

  /** Applies the event stream from the snapshot's index until it ends (it always ends in an error or an abort). */
  private async follow(signal: AbortSignal): Promise<void> {
    // Nomad sends a heartbeat every 10 s; a stream silent for longer is dead without having ended
    // (a client agent whose server went away keeps the response open): start over.
    const silentMs = this.opts.silentStreamMs ?? SILENT_STREAM_MS;
    let quiet: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(quiet);
      quiet = setTimeout(() => {
        this.opts.log?.warn({ silentMs }, "Nomad's event stream went silent: taking a new snapshot");
        this.abort.abort();
      }, silentMs);
    };
    arm();
    try {
      for await (const batch of this.opts.client.events(
        "Service",
        this.opts.namespace,
        this.index + 1,
        signal,
      )) {
        arm();
        this.apply(batch.events);
      }
    } finally {
      clearTimeout(quiet);
    }
    // Returns only when aborted: stopped, silent, or due for the periodic re-snapshot (the loop starts over).
  }

  /** Applies one batch of Service events. */
  private apply(events: EventBatch["events"]): void {
    if (events.length === 0) return;
    let changed = false;
    for (const ev of events) {
      const reg = ev.Payload?.Service;
      if (!reg) continue;
      if (ev.Type === "ServiceRegistration") {
        this.regs.set(reg.ID, reg);
        changed = true;
      } else if (ev.Type === "ServiceDeregistration") {
        changed = this.regs.delete(reg.ID) || changed;
        this.unhealthy.delete(reg.ID);
      }
      this.index = Math.max(this.index, ev.Index);
    }
    this.state.syncedAt = new Date().toISOString();
    if (changed) this.update();
  }

  /** Reads the check results of every allocation with a registration; publishes when health changed. */
  private async pollChecks(): Promise<void> {
    const allocs = new Set([...this.regs.values()].map((r) => r.AllocID));
    const failing = new Set<string>();
    for (const alloc of allocs) {
      let results: Awaited<ReturnType<NomadClient["checks"]>>;
      try {
        results = await this.opts.client.checks(alloc);
      } catch {
        // Its client agent is unreachable: keep what the last poll said about it.
        for (const r of this.regs.values())
          if (r.AllocID === alloc && this.unhealthy.has(r.ID)) failing.add(r.ID);
        continue;
      }
      const failed = new Set(results.filter((c) => c.Status === "failure").map((c) => c.Service));
      for (const r of this.regs.values())
        if (r.AllocID === alloc && failed.has(r.ServiceName)) failing.add(r.ID);
    }
    const same = failing.size === this.unhealthy.size && [...failing].every((id) => this.unhealthy.has(id));
    if (same || this.stopped) return;
    this.unhealthy = failing;
    this.update();
  }

  private update(): void {
    const { specs, problems } = nomadServiceSpecs(this.regs.values(), this.unhealthy, this.opts.serviceCIDRs);
    this.state.services = specs.length;
    this.state.registrations = this.regs.size;
    const text = JSON.stringify(specs);
    if (text === this.published) return;
    this.published = text;
    for (const p of problems) this.opts.log?.warn(p, `Nomad service ${p.service} not synced: ${p.problem}`);
    this.opts.publish(specs);
  }
}
