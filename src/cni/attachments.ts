// What nkit-cni attached, by container id: which network, interface, netns and mode. GC and CHECK
// need it (IPAM and endpoint records do not say which CNI network made them, and endpoints wired by
// the NRI hook or the API must never be collected by a CNI GC). Persisted atomically on every change.
import { StateCorruptError } from "../errors.js";
import { readFileIfExists, writeFileAtomic } from "../state/atomic-file.js";
import type { CniMode, PortMapping } from "./protocol.js";

export interface Attachment {
  containerId: string;
  ifName: string;
  /** The CNI network name ("name" of the conflist). */
  network: string;
  mode: CniMode;
  netns: string;
  addresses: { ipv4?: string; ipv6?: string };
  /** From the portMappings capability; recorded for the service load-balancer. */
  portMappings: PortMapping[];
  createdAt: string;
}

interface StateFile {
  version: 1;
  attachments: Attachment[];
}

export class AttachmentStore {
  private readonly byId = new Map<string, Attachment>();

  private constructor(private readonly path: string) {}

  static open(path: string): AttachmentStore {
    const store = new AttachmentStore(path);
    const raw = readFileIfExists(path);
    if (raw !== undefined) {
      let parsed: StateFile;
      try {
        parsed = JSON.parse(raw) as StateFile;
      } catch (e) {
        throw new StateCorruptError(path, "invalid JSON", { cause: e });
      }
      if (parsed.version !== 1 || !Array.isArray(parsed.attachments)) {
        throw new StateCorruptError(path, `unknown layout (version ${String(parsed.version)})`);
      }
      for (const a of parsed.attachments) store.byId.set(a.containerId, a);
    }
    return store;
  }

  get(containerId: string): Attachment | undefined {
    const a = this.byId.get(containerId);
    return a ? structuredClone(a) : undefined;
  }

  list(): Attachment[] {
    return [...this.byId.values()].map((a) => structuredClone(a));
  }

  put(a: Attachment): void {
    const before = this.byId.get(a.containerId);
    this.byId.set(a.containerId, structuredClone(a));
    try {
      this.persist();
    } catch (e) {
      if (before) this.byId.set(a.containerId, before);
      else this.byId.delete(a.containerId);
      throw e;
    }
  }

  delete(containerId: string): boolean {
    const before = this.byId.get(containerId);
    if (!before) return false;
    this.byId.delete(containerId);
    try {
      this.persist();
    } catch (e) {
      this.byId.set(containerId, before);
      throw e;
    }
    return true;
  }

  private persist(): void {
    const state: StateFile = { version: 1, attachments: [...this.byId.values()] };
    writeFileAtomic(this.path, `${JSON.stringify(state, null, 1)}\n`);
  }
}
