// Endpoint records, one JSON file per endpoint, replaced atomically. A record is written with
// phase "wiring" before the first kernel object exists, so after a crash at any point a restart
// knows which half-built endpoints to tear down or finish.
import { mkdirSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { StateCorruptError } from "../errors.js";
import { readFileIfExists, removeStaleTemps, writeFileAtomic } from "../state/atomic-file.js";

export type DatapathMode = "netkit" | "veth";

export interface EndpointRecord {
  version: 1;
  id: string;
  /** Numeric id used as the BPF counter key; unique among live endpoints. */
  epNum: number;
  phase: "wiring" | "wired";
  mode: DatapathMode;
  netnsPath: string;
  podIfName: string;
  hostIfName: string;
  hostIfindex: number;
  addresses: { ipv4?: string; ipv6?: string };
  /** True when IPAM allocated the addresses for this wiring (so unwire releases them). */
  ipamOwned: boolean;
  labels: Record<string, string>;
  createdAt: string;
}

/**
 * Records live in memory and on disk: every change is written through (atomically) before it is
 * kept, and the disk is read once, at construction. nkitd is the only writer of its state dir
 * (instance lock), so reads on the wiring path never touch the disk.
 */
export class EndpointStore {
  private readonly dir: string;
  private readonly records = new Map<string, EndpointRecord>();

  constructor(stateDir: string) {
    this.dir = join(stateDir, "endpoints");
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    removeStaleTemps(this.dir);
    for (const f of readdirSync(this.dir)) {
      if (!f.endsWith(".json") || f.startsWith(".")) continue;
      const p = join(this.dir, f);
      const raw = readFileIfExists(p);
      if (raw === undefined) continue;
      try {
        const rec = JSON.parse(raw) as EndpointRecord;
        this.records.set(rec.hostIfName, rec);
      } catch (e) {
        throw new StateCorruptError(p, "invalid JSON", { cause: e });
      }
    }
  }

  private path(hostIfName: string): string {
    return join(this.dir, `${hostIfName}.json`);
  }

  put(rec: EndpointRecord): void {
    writeFileAtomic(this.path(rec.hostIfName), `${JSON.stringify(rec)}\n`);
    this.records.set(rec.hostIfName, structuredClone(rec));
  }

  /** A copy: callers change it and put() it back. */
  get(hostIfName: string): EndpointRecord | undefined {
    const r = this.records.get(hostIfName);
    return r ? structuredClone(r) : undefined;
  }

  delete(hostIfName: string): void {
    rmSync(this.path(hostIfName), { force: true });
    this.records.delete(hostIfName);
  }

  list(): EndpointRecord[] {
    return [...this.records.values()].map((r) => structuredClone(r));
  }
}
