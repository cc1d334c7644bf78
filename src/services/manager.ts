// The one owner of services: every source (config, service files, API, label selectors, host
// ports, Nomad) hands its services here, and only here are they checked against each other (a name
// or a frontend taken by another service is refused, naming the owner) and turned into load-balancer
// entries for the datapath. Services the API added and those synced from Nomad are kept in the state
// store, so they outlive a restart (and a Nomad that is down then); the others are re-read from their
// source at start.
import { AlreadyExistsError, NotFoundError } from "../errors.js";
import type { Logger } from "../log.js";
import { deepFreeze, RecordStore } from "../state/json-store.js";
import { arrayOf, boolean, count, object, oneOf, optional, recordOf, string } from "../state/shape.js";
import {
  frontendId,
  frontendOf,
  keptSpec,
  type LbEntry,
  lbEntries,
  programmedAs,
  type ServiceSource,
  type ServiceSpec,
} from "./spec.js";

/** What the manager needs from the datapath: set or remove one frontend, each call complete. */
export interface LbTable {
  set(entry: LbEntry): void;
  remove(entry: Pick<LbEntry, "vip" | "port" | "protocol">): void;
  /** What the maps hold already (pinned by an earlier nkitd), so stale frontends can be removed. */
  list?(): LbEntry[];
  /** Connections sent to each backend of a frontend so far, in backend order. */
  connections?(entry: Pick<LbEntry, "vip" | "port" | "protocol">): bigint[];
}

/** An endpoint as selectors see it. */
export interface SelectableEndpoint {
  labels: Readonly<Record<string, string>>;
  addresses: readonly string[];
}

interface ServiceRecord {
  spec: ServiceSpec;
  source: ServiceSource;
  /** The file for source "file", the pod for "host-port"; empty otherwise. */
  origin: string;
}

export interface ServiceView extends ServiceRecord {
  entries: LbEntry[];
}

interface ServiceManagerOptions {
  table: LbTable;
  /**
   * Where the services only nkitd remembers (API, Nomad) are kept: one file per service, so adding
   * one writes one small file (`<paths.state>/services/`). A `<storeDir>.json` (all of them in one
   * file, as earlier nkit builds kept them) is taken over once.
   */
  storeDir: string;
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
  external: optional(boolean),
});

const recordShape = object<ServiceRecord>({
  spec: specShape,
  source: oneOf("config", "file", "api", "selector", "host-port", "nomad"),
  origin: string,
});

const SERVICE_STORE_FIX =
  "move it aside to start fresh: services from nkitd.yaml, paths.services, Nomad and host ports come back from their sources, but services added with `nkit service add` must be added again";

/** The service store under dir, with the one-file store of earlier builds (`<dir>.json`) moved in. */
function openServiceStore(dir: string): RecordStore<ServiceRecord> {
  const layout = {
    version: 1,
    record: recordShape,
    key: (r: ServiceRecord) => r.spec.name,
    fix: SERVICE_STORE_FIX,
  };
  return RecordStore.inDirectory({ dir, ...layout, legacyFile: { path: `${dir}.json`, field: "services" } });
}

/** Sources whose services only nkitd remembers: kept in the state store, so a restart has them at once. */
const PERSISTED: ReadonlySet<ServiceSource> = new Set(["api", "nomad"]);

function matches(
  selector: Readonly<Record<string, string>>,
  labels: Readonly<Record<string, string>>,
): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

/** The record the manager keeps: the spec copied by keptSpec, frozen (the store shares it). */
function keptRecord(spec: ServiceSpec, source: ServiceSource, origin: string): ServiceRecord {
  return deepFreeze({ spec: keptSpec(spec), source, origin });
}

function sameRecord(a: ServiceRecord, b: ServiceRecord): boolean {
  return a.source === b.source && a.origin === b.origin && JSON.stringify(a.spec) === JSON.stringify(b.spec);
}

export class ServiceManager {
  /** name → its record, frozen and shared with the state store (one copy of each service). */
  private readonly services = new Map<string, ServiceRecord>();
  /** frontend id → the service that holds it (from the specs, whatever their backends). */
  private readonly owners = new Map<string, string>();
  /** `source\0origin` → names, so replacing one file's services does not scan all of them. */
  private readonly bySource = new Map<string, Set<string>>();
  /**
   * Selector services' resolved entries (they follow the endpoints). A service with fixed backends
   * keeps none: its entries follow from its spec alone (lbEntries), computed when asked for.
   */
  private readonly selected = new Map<string, LbEntry[]>();
  /** What the datapath holds: frontend id → programmedAs(entry). */
  private readonly programmed = new Map<string, string>();
  private readonly persisted: RecordStore<ServiceRecord>;
  private endpoints: readonly SelectableEndpoint[] = [];
  private held: boolean;

  constructor(private readonly opts: ServiceManagerOptions) {
    this.persisted = openServiceStore(opts.storeDir);
    for (const e of opts.table.list?.() ?? []) this.programmed.set(frontendId(e), programmedAs(e));
    this.held = opts.holdUntilReady === true;
    // The store's records are frozen: the manager holds the same objects.
    for (const r of this.persisted.peek()) this.put(r as ServiceRecord);
    if (!this.held) this.reconcile();
  }

  /** Ends holdUntilReady: the datapath gets every source's frontends, stale ones are removed. */
  ready(): void {
    this.held = false;
    this.reconcile();
  }

  get(name: string): ServiceView | undefined {
    const r = this.services.get(name);
    return r ? this.view(r) : undefined;
  }

  /** Connections sent to each backend of a frontend (backend order); [] when the table keeps none. */
  connections(entry: Pick<LbEntry, "vip" | "port" | "protocol">): bigint[] {
    return this.opts.table.connections?.(entry) ?? [];
  }

  list(): ServiceView[] {
    // Names are [a-z0-9._-]: code unit order is their order (localeCompare would load collation).
    return [...this.services.values()]
      .sort((a, b) => (a.spec.name < b.spec.name ? -1 : a.spec.name > b.spec.name ? 1 : 0))
      .map((r) => this.view(r));
  }

  /** Adds or replaces one service of a source; a name or frontend another service holds is refused. */
  upsert(spec: ServiceSpec, source: ServiceSource, origin = ""): ServiceView {
    const record = keptRecord(spec, source, origin);
    this.check(record);
    const before = this.services.get(spec.name);
    if (source === "api") this.persisted.put(record);
    try {
      this.put(record);
    } catch (e) {
      // The datapath refused (a full map): put back what was there, so state and maps agree.
      this.drop(spec.name);
      if (before) this.put(before);
      if (source === "api") {
        if (before?.source === "api") this.persisted.put(before);
        else this.persisted.delete(spec.name);
      }
      throw e;
    }
    return this.view(record);
  }

  /** Removes a service by name (any source: an operator may remove what a file added, until it changes). */
  delete(name: string): ServiceView {
    const r = this.services.get(name);
    if (!r) throw new NotFoundError(`service ${name} does not exist; see nkit service list`);
    if (r.source === "api") this.persisted.delete(name);
    const view = this.view(r);
    this.drop(name);
    return view;
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
    const keep = new Set(specs.map((s) => s.name));
    const persist = PERSISTED.has(source);
    for (const [key, names] of [...this.bySource]) {
      const [src, org] = key.split("\0");
      if (src !== source || (origin !== undefined && org !== origin)) continue;
      for (const name of [...names]) {
        if (keep.has(name)) continue;
        this.drop(name);
        if (persist) this.persisted.delete(name);
      }
    }
    const failed: { name: string; error: Error }[] = [];
    for (const spec of specs) {
      const record = keptRecord(spec, source, origin ?? "");
      const before = this.services.get(spec.name);
      // Unchanged services are left as they are, not written again (a restart replays every Nomad service).
      if (before && sameRecord(before, record)) continue;
      try {
        this.check(record);
        this.put(record);
        if (persist) this.persisted.put(record);
      } catch (e) {
        const current = this.services.get(spec.name);
        if (current && current.source === source && current.origin === record.origin) {
          this.drop(spec.name);
          if (persist) this.persisted.delete(spec.name);
        }
        failed.push({ name: spec.name, error: e as Error });
      }
    }
    return failed;
  }

  /** New endpoint set for label selectors; selector services are re-resolved. */
  setEndpoints(endpoints: readonly SelectableEndpoint[]): void {
    this.endpoints = endpoints.map((e) => ({ labels: { ...e.labels }, addresses: [...e.addresses] }));
    for (const name of this.selected.keys()) this.resolve(name);
  }

  private entriesOf(r: ServiceRecord): LbEntry[] {
    const sel = r.spec.selector;
    const selected = sel
      ? this.endpoints.filter((e) => matches(sel, e.labels)).flatMap((e) => e.addresses)
      : [];
    return lbEntries(r.spec, selected);
  }

  private view(r: ServiceRecord): ServiceView {
    return { ...structuredClone(r), entries: this.selected.get(r.spec.name) ?? this.entriesOf(r) };
  }

  private check(r: ServiceRecord): void {
    const other = this.services.get(r.spec.name);
    if (other && (other.source !== r.source || (r.source === "host-port" && other.origin !== r.origin))) {
      throw new AlreadyExistsError(
        `service ${r.spec.name} already exists from ${other.source}${other.origin ? ` (${other.origin})` : ""}; pick another name or remove it there`,
      );
    }
    for (const e of lbEntries(r.spec)) {
      const owner = this.owners.get(frontendId(e));
      if (owner !== undefined && owner !== r.spec.name) {
        throw new AlreadyExistsError(
          `${frontendId(e)} is already the frontend of service ${owner}; use another VIP or port`,
        );
      }
    }
  }

  /** Records a checked service and programs it. */
  private put(r: ServiceRecord): void {
    const name = r.spec.name;
    const before = this.services.get(name);
    if (before) this.unindex(before);
    this.services.set(name, r);
    for (const e of lbEntries(r.spec)) this.owners.set(frontendId(e), name);
    const key = `${r.source}\0${r.origin}`;
    let names = this.bySource.get(key);
    if (!names) {
      names = new Set();
      this.bySource.set(key, names);
    }
    names.add(name);
    this.resolve(name, before);
  }

  private drop(name: string): void {
    const r = this.services.get(name);
    if (!r) return;
    this.unindex(r);
    this.services.delete(name);
    this.resolve(name, r);
  }

  private unindex(r: ServiceRecord): void {
    const name = r.spec.name;
    for (const e of lbEntries(r.spec))
      if (this.owners.get(frontendId(e)) === name) this.owners.delete(frontendId(e));
    const key = `${r.source}\0${r.origin}`;
    const names = this.bySource.get(key);
    names?.delete(name);
    if (names?.size === 0) this.bySource.delete(key);
  }

  /**
   * Recomputes one service's entries and brings the datapath to them (unless held). `before` is the
   * record it had, whose frontends are removed when the service no longer has them.
   */
  private resolve(name: string, before?: ServiceRecord): void {
    const r = this.services.get(name);
    const old = this.selected.get(name) ?? (before ? lbEntries(before.spec) : []);
    const now = r ? this.entriesOf(r) : [];
    if (r?.spec.selector) this.selected.set(name, now);
    else this.selected.delete(name);
    if (this.held) return;
    const ids = new Set(now.map((e) => frontendId(e)));
    for (const e of now) this.program(e);
    for (const e of old) {
      const id = frontendId(e);
      if (!ids.has(id) && this.owners.get(id) === undefined) this.unprogram(id);
    }
  }

  /** Full pass: every service's entries set, everything else the datapath holds removed. */
  private reconcile(): void {
    const ids = new Set<string>();
    for (const r of this.services.values()) {
      for (const e of this.selected.get(r.spec.name) ?? this.entriesOf(r)) {
        ids.add(frontendId(e));
        this.program(e);
      }
    }
    for (const id of [...this.programmed.keys()]) if (!ids.has(id)) this.unprogram(id);
  }

  private program(e: LbEntry): void {
    const id = frontendId(e);
    const as = programmedAs(e);
    if (this.programmed.get(id) === as) return;
    this.opts.table.set(e);
    this.programmed.set(id, as);
  }

  private unprogram(id: string): void {
    if (!this.programmed.has(id)) return;
    this.opts.table.remove(frontendOf(id));
    this.programmed.delete(id);
  }
}
