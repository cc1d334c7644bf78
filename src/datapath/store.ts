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

export class EndpointStore {
  private readonly dir: string;

  constructor(stateDir: string) {
    this.dir = join(stateDir, "endpoints");
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    removeStaleTemps(this.dir);
  }

  private path(hostIfName: string): string {
    return join(this.dir, `${hostIfName}.json`);
  }

  put(rec: EndpointRecord): void {
    writeFileAtomic(this.path(rec.hostIfName), `${JSON.stringify(rec)}\n`);
  }

  get(hostIfName: string): EndpointRecord | undefined {
    const p = this.path(hostIfName);
    const raw = readFileIfExists(p);
    if (raw === undefined) return undefined;
    try {
      return JSON.parse(raw) as EndpointRecord;
    } catch (e) {
      throw new StateCorruptError(p, "invalid JSON", { cause: e });
    }
  }

  delete(hostIfName: string): void {
    rmSync(this.path(hostIfName), { force: true });
  }

  list(): EndpointRecord[] {
    return readdirSync(this.dir)
      .filter((f) => f.endsWith(".json") && !f.startsWith("."))
      .map((f) => this.get(f.slice(0, -".json".length)))
      .filter((r): r is EndpointRecord => r !== undefined);
  }
}
