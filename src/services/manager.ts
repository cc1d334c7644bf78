// The one owner of services: every source (config, service files, API, label selectors, host
// ports, Nomad) hands its services here, and only here are they checked against each other (a name
// or a frontend taken by another service is refused, naming the owner) and turned into load-balancer
// entries for the datapath. Services the API added are kept in the state store, so they outlive a
// restart; the others are re-read from their source at start.
import { AlreadyExistsError, NotFoundError } from "../errors.js";
import type { Logger } from "../log.js";
import { RecordStore } from "../state/json-store.js";
import { arrayOf, count, object, oneOf, optional, recordOf, string } from "../state/shape.js";
import { frontendId, type LbEntry, lbEntries, type ServiceSource, type ServiceSpec } from "./spec.js";

/** What the manager needs from the datapath: set or remove one frontend, each call complete. */
export interface LbTable {
  set(entry: LbEntry): void;
  remove(entry: Pick<LbEntry, "vip" | "port" | "protocol">): void;
  /** What the maps hold already (pinned by an earlier nkitd), so stale frontends can be removed. */
  list?(): LbEntry[];
}

/** An endpoint as selectors see it. */
export interface SelectableEndpoint {
  labels: Readonly<Record<string, string>>;
  addresses: readonly string[];
}

export interface ServiceRecord {
  spec: ServiceSpec;
  source: ServiceSource;
  /** The file for source "file", the pod for "host-port"; empty otherwise. */
  origin: string;
}

export interface ServiceView extends ServiceRecord {
  entries: LbEntry[];
}

export interface ServiceManagerOptions {
  table: LbTable;
  /** Where API-added services are kept (`<paths.state>/services.json`). */
  statePath: string;
  log?: Logger;
  /**
   * Keep the datapath as it is until ready(): a restarting nkitd loads every source first, so a
   * frontend is never removed and re-added (breaking new connections) while sources are read.
   */
  holdUntilReady?: boolean;
}

const specShape = object<ServiceSpec>({
  name: string,
  vip: string,
  family: oneOf(4, 6),
  ports: arrayOf(
    object<ServiceSpec["ports"][number]>({ port: count, protocol: oneOf("tcp", "udp"), targetPort: count }),
  ),
  backends: arrayOf(object<ServiceSpec["backends"][number]>({ address: string, port: optional(count) })),
  selector: optional(recordOf(string)),
  affinity: oneOf("none", "client-ip"),
  affinityTimeoutSeconds: count,
});

const recordShape = object<ServiceRecord>({
  spec: specShape,
  source: oneOf("config", "file", "api", "selector", "host-port", "nomad"),
  origin: string,
});

function matches(
  selector: Readonly<Record<string, string>>,
  labels: Readonly<Record<string, string>>,
): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

export class ServiceManager {
  private readonly services = new Map<string, ServiceRecord>();
  /** What the datapath holds: frontend id → entry. */
  private readonly programmed = new Map<string, LbEntry>();
  private readonly persisted: RecordStore<ServiceRecord>;
  private endpoints: readonly SelectableEndpoint[] = [];
  private held: boolean;

  constructor(private readonly o: ServiceManagerOptions) {
    this.persisted = RecordStore.inFile({
      path: o.statePath,
      field: "services",
      version: 1,
      record: recordShape,
      key: (r) => r.spec.name,
    });
    for (const r of this.persisted.list()) this.services.set(r.spec.name, r);
    for (const e of o.table.list?.() ?? []) this.programmed.set(frontendId(e), e);
    this.held = o.holdUntilReady === true;
    this.sync();
  }

  /** Ends holdUntilReady: the datapath gets every source's frontends, stale ones are removed. */
  ready(): void {
    this.held = false;
    this.sync();
  }

  get(name: string): ServiceView | undefined {
    const r = this.services.get(name);
    return r ? this.view(r) : undefined;
  }

  list(): ServiceView[] {
    return [...this.services.values()]
      .sort((a, b) => a.spec.name.localeCompare(b.spec.name))
      .map((r) => this.view(r));
  }

  /** Adds or replaces one service of a source; a name or frontend another service holds is refused. */
  upsert(spec: ServiceSpec, source: ServiceSource, origin = ""): ServiceView {
    const record: ServiceRecord = { spec: structuredClone(spec), source, origin };
    this.check([record]);
    const before = this.services.get(spec.name);
    if (source === "api") this.persisted.put(record);
    this.services.set(spec.name, record);
    try {
      this.sync();
    } catch (e) {
      // The datapath refused (a full map): put back what was there, so state and maps agree.
      if (before) this.services.set(spec.name, before);
      else this.services.delete(spec.name);
      if (source === "api") {
        if (before?.source === "api") this.persisted.put(before);
        else this.persisted.delete(spec.name);
      }
      this.sync();
      throw e;
    }
    return this.view(record);
  }

  /** Removes a service by name (any source: an operator may remove what a file added, until it changes). */
  delete(name: string): ServiceView {
    const r = this.services.get(name);
    if (!r) throw new NotFoundError(`service ${name} does not exist; see nkit service list`);
    if (r.source === "api") this.persisted.delete(name);
    this.services.delete(name);
    this.sync();
    return this.view(r);
  }

  /**
   * Makes the services of one source (and origin, when given) exactly `specs`: new ones added,
   * changed ones replaced, missing ones removed. Specs that conflict are skipped and returned with
   * the reason, so one bad file or entry never takes the others down.
   */
  replaceSource(
    source: ServiceSource,
    specs: readonly ServiceSpec[],
    origin?: string,
  ): { name: string; error: Error }[] {
    const mine = (r: ServiceRecord) => r.source === source && (origin === undefined || r.origin === origin);
    for (const [name, r] of this.services) if (mine(r)) this.services.delete(name);
    const failed: { name: string; error: Error }[] = [];
    for (const spec of specs) {
      const record: ServiceRecord = { spec: structuredClone(spec), source, origin: origin ?? "" };
      try {
        this.check([record]);
        this.services.set(spec.name, record);
      } catch (e) {
        failed.push({ name: spec.name, error: e as Error });
      }
    }
    this.sync();
    return failed;
  }

  /** New endpoint set for label selectors; selector services are re-resolved. */
  setEndpoints(endpoints: readonly SelectableEndpoint[]): void {
    this.endpoints = endpoints.map((e) => ({ labels: { ...e.labels }, addresses: [...e.addresses] }));
    this.sync();
  }

  private entriesOf(r: ServiceRecord): LbEntry[] {
    const sel = r.spec.selector;
    const selected = sel
      ? this.endpoints.filter((e) => matches(sel, e.labels)).flatMap((e) => e.addresses)
      : [];
    return lbEntries(r.spec, selected);
  }

  private view(r: ServiceRecord): ServiceView {
    return { ...structuredClone(r), entries: this.entriesOf(r) };
  }

  private check(records: readonly ServiceRecord[]): void {
    for (const r of records) {
      const other = this.services.get(r.spec.name);
      if (other && other.source !== r.source) {
        throw new AlreadyExistsError(
          `service ${r.spec.name} already exists from ${other.source}${other.origin ? ` (${other.origin})` : ""}; pick another name or remove it there`,
        );
      }
      const taken = new Map<string, string>();
      for (const s of this.services.values()) {
        if (s.spec.name === r.spec.name) continue;
        for (const e of lbEntries(s.spec)) taken.set(frontendId(e), s.spec.name);
      }
      for (const e of lbEntries(r.spec)) {
        const owner = taken.get(frontendId(e));
        if (owner !== undefined) {
          throw new AlreadyExistsError(
            `${frontendId(e)} is already the frontend of service ${owner}; use another VIP or port`,
          );
        }
      }
    }
  }

  /** Brings the datapath to the wanted entries: sets changed frontends, then removes stale ones. */
  private sync(): void {
    if (this.held) return;
    const want = new Map<string, LbEntry>();
    for (const r of this.services.values()) for (const e of this.entriesOf(r)) want.set(frontendId(e), e);
    for (const [id, e] of want) {
      const have = this.programmed.get(id);
      if (have && JSON.stringify(have) === JSON.stringify(e)) continue;
      this.o.table.set(e);
      this.programmed.set(id, e);
    }
    for (const [id, e] of this.programmed) {
      if (want.has(id)) continue;
      this.o.table.remove(e);
      this.programmed.delete(id);
    }
  }
}
