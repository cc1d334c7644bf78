// nkitd's state on disk: versioned JSON documents and keyed record collections built on them. Every
// owner of host state (IPAM, endpoints, CNI attachments, services, NAT) keeps its records here, so
// one piece of code decides how a file is read back (JSON, layout version, shape: a bad file is a
// StateCorruptError naming it and the field) and how a change is made durable (written through,
// atomically, before memory changes; memory restored if the write fails).
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { z } from "zod";
import { StateCorruptError } from "../errors.js";
import { type IssueContext, reportedIssue } from "../util/schema.js";
import { readFileIfExists, removeStaleTemps, writeFileAtomic } from "./atomic-file.js";
import { type Shape, shapeMismatch } from "./shape.js";

export interface DocumentFormat<T> {
  /** The layout version written into every file as `"version"`; bump it when the shape changes. */
  version: number;
  /** The document without its `version` key. */
  shape: Shape<T>;
  /**
   * Upgrades a document of an older layout, one step (`from` → `from + 1`); without it an older
   * layout is refused like a corrupt file.
   */
  upgrade?: (from: number, document: Record<string, unknown>) => Record<string, unknown>;
  /** JSON indentation on disk (0 = one line). */
  indent?: number;
  /** What to do about an unreadable file, when not "move it aside to start fresh" (the owner knows). */
  fix?: string;
}

const noVersion = {
  error: (iss: IssueContext) => `no layout version (got ${JSON.stringify(iss.input) ?? "none"})`,
};

/** Every state file is a JSON object holding its layout version beside the document's fields. */
const envelope = z.looseObject(
  { version: z.number(noVersion).refine((v) => Number.isInteger(v) && v >= 1, noVersion) },
  { error: () => "not a JSON object" },
);

/** Parses and checks one versioned document; `path` only names the file in errors. */
export function decodeDocument<T>(path: string, text: string, format: DocumentFormat<T>): T {
  const corrupt = (detail: string, cause?: unknown) =>
    new StateCorruptError(path, detail, {
      ...(cause === undefined ? {} : { cause }),
      ...(format.fix ? { fix: format.fix } : {}),
    });
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw corrupt("invalid JSON", e);
  }
  const top = envelope.safeParse(parsed);
  if (!top.success) throw corrupt(reportedIssue(top.error).message);
  let doc: Record<string, unknown> = top.data;
  let version = top.data.version;
  if (version > format.version) {
    throw corrupt(
      `layout version ${version} was written by a newer nkit; this one reads up to ${format.version}`,
    );
  }
  while (version < format.version) {
    if (!format.upgrade) {
      throw corrupt(`layout version ${version} is no longer read (current ${format.version})`);
    }
    doc = format.upgrade(version, doc);
    version++;
  }
  const { version: _version, ...body } = doc;
  const result = format.shape.safeParse(body);
  if (!result.success) throw corrupt(shapeMismatch(result.error), result.error);
  return result.data;
}

function encodeDocument<T extends object>(value: T, format: DocumentFormat<T>): string {
  return `${JSON.stringify({ version: format.version, ...value }, null, format.indent ?? 0)}\n`;
}

/** The document at path, or undefined when the file does not exist. */
export function readDocument<T>(path: string, format: DocumentFormat<T>): T | undefined {
  const text = readFileIfExists(path);
  return text === undefined ? undefined : decodeDocument(path, text, format);
}

export function writeDocument<T extends object>(
  path: string,
  value: T,
  format: DocumentFormat<T>,
  mode?: number,
  o: { durable?: boolean } = {},
): void {
  writeFileAtomic(path, encodeDocument(value, format), mode, o);
}

/** T with every nested property read-only. */
export type DeepReadonly<T> = { readonly [K in keyof T]: T[K] extends object ? DeepReadonly<T[K]> : T[K] };

/** Freezes v and everything it holds; returns v. */
export function deepFreeze<T>(v: T): T {
  if (typeof v !== "object" || v === null || Object.isFrozen(v)) return v;
  Object.freeze(v);
  for (const inner of Object.values(v)) deepFreeze(inner);
  return v;
}

/** How a RecordStore keeps its records on disk. */
interface Backing<T> {
  load(): Map<string, T>;
  /** Makes the change to `key` durable (`rec` undefined = removed); `all` is the state after it. */
  save(key: string, rec: T | undefined, all: ReadonlyMap<string, T>): void;
}

interface FileStoreOptions<T> {
  /** One file holding every record: `{"version": N, "<field>": [record, ...]}`. */
  path: string;
  field: string;
  version: number;
  record: Shape<T>;
  key: (rec: T) => string;
  upgrade?: DocumentFormat<unknown>["upgrade"];
  /** What to do about an unreadable file (DocumentFormat.fix). */
  fix?: string;
}

interface DirectoryStoreOptions<T> {
  /** One file per record, `<key>.json` holding `{"version": N, ...record}`. */
  dir: string;
  version: number;
  record: Shape<T & object>;
  /** Must be usable as a file name (no "/", not starting with "."), unless fileName encodes it. */
  key: (rec: T) => string;
  /** The file name (without `.json`) of a key that may not be one by itself; default the key. */
  fileName?: (key: string) => string;
  upgrade?: DocumentFormat<unknown>["upgrade"];
  /** What to do about an unreadable record file (DocumentFormat.fix). */
  fix?: string;
  /**
   * Records of kernel objects, which a reboot takes away: written without fsync (a process crash
   * cannot tear them, and only a reboot loses the page cache), and dropped at load when the
   * directory was written in an earlier boot (its boot id, in `.boot-id`, is not the kernel's).
   */
  perBoot?: boolean;
  /**
   * Records of running containers that outlive a reboot as requests (a restarted container asks
   * for its addresses again): written without fsync like perBoot ones, but kept. A record file
   * that does not decode and was last written before this boot is what a power loss left of an
   * unsynced write: it is moved aside (`<name>.earlier-boot-<ms>`, reported through onDiscarded),
   * since the container it described died with that boot. One written in this boot is corrupt like
   * any other (a process crash cannot tear a renamed file).
   */
  unsynced?: { onDiscarded?: (path: string, movedTo: string, why: StateCorruptError) => void };
  /**
   * The one-file store (`{"version": N, "<field>": [record, ...]}`) an earlier build kept: its
   * records are moved in at open and the file removed.
   */
  legacyFile?: { path: string; field: string };
}

/** When the running kernel booted (ms since the epoch, to the second). */
function bootedAt(): number {
  const line = /^btime (\d+)$/m.exec(readFileSync("/proc/stat", "utf8"));
  if (!line?.[1]) throw new Error("/proc/stat has no btime line");
  return Number(line[1]) * 1000;
}

const SAFE_FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$/;

/**
 * A file name for any key: the key itself when it is a plain name, else `~` and the key's SHA-256
 * (no key that is a plain name starts with `~`, so the two never meet).
 */
export function fileNameOfKey(key: string): string {
  return SAFE_FILE_NAME.test(key) ? key : `~${createHash("sha256").update(key).digest("hex")}`;
}

/** The running kernel's boot id: a new one every boot. */
function bootId(): string {
  return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
}

/**
 * Removes the records a directory holds from an earlier boot and marks it as this boot's. A
 * directory without a mark (written by a build before marks) is taken as this boot's: its records
 * go through the owner's usual checks.
 */
function dropEarlierBoot(dir: string): void {
  const mark = join(dir, ".boot-id");
  const now = bootId();
  const was = readFileIfExists(mark)?.trim();
  if (was === now) return;
  if (was !== undefined) {
    for (const name of readdirSync(dir)) if (name.endsWith(".json")) rmSync(join(dir, name), { force: true });
  }
  writeFileAtomic(mark, `${now}\n`);
}

/**
 * Records by key, in memory and on disk. Reads never touch the disk (nkitd is the only writer of
 * its state dir: instance lock); every change is written through before it is kept, so a caller
 * that sees put() return knows a crash cannot lose it, and one that sees it throw knows nothing
 * changed. The records kept are frozen all the way down: get() and list() hand out copies, peek()
 * the records themselves, and an owner that holds its records frozen shares them with the store
 * (one copy of each in memory: at 10,000 services a second copy cost ~8 MiB).
 */
export class RecordStore<T> {
  private readonly records: Map<string, T>;
  private readonly listeners = new Set<(key: string) => void>();

  private constructor(
    private readonly backing: Backing<T>,
    private readonly keyOf: (rec: T) => string,
  ) {
    this.records = backing.load();
    for (const rec of this.records.values()) deepFreeze(rec);
  }

  static inFile<T>(o: FileStoreOptions<T>): RecordStore<T> {
    const records = z.array(o.record, { error: () => "expected an array of records" });
    // `?? []` only satisfies the index type: the object schema has required the field.
    const listShape = z.object({ [o.field]: records }).transform((body) => body[o.field] ?? []);
    const format: DocumentFormat<T[]> = { version: o.version, shape: listShape, indent: 1 };
    if (o.upgrade) format.upgrade = o.upgrade;
    if (o.fix) format.fix = o.fix;
    const backing: Backing<T> = {
      load: () => {
        removeStaleTemps(dirname(o.path));
        const text = readFileIfExists(o.path);
        const records = new Map<string, T>();
        if (text === undefined) return records;
        for (const rec of decodeDocument(o.path, text, format)) {
          const key = o.key(rec);
          if (records.has(key)) {
            throw new StateCorruptError(o.path, `two records for ${key}`, o.fix ? { fix: o.fix } : {});
          }
          records.set(key, rec);
        }
        return records;
      },
      save: (_key, _rec, all) => {
        const doc = { version: o.version, [o.field]: [...all.values()] };
        writeFileAtomic(o.path, `${JSON.stringify(doc, null, 1)}\n`);
      },
    };
    return new RecordStore(backing, o.key);
  }

  static inDirectory<T extends object>(o: DirectoryStoreOptions<T>): RecordStore<T> {
    const format: DocumentFormat<T> = { version: o.version, shape: o.record };
    if (o.upgrade) format.upgrade = o.upgrade;
    if (o.fix) format.fix = o.fix;
    const nameOf = o.fileName ?? ((key: string) => key);
    const fileOf = (key: string): string => {
      const name = nameOf(key);
      if (!name || name.includes("/") || name.startsWith(".")) {
        throw new StateCorruptError(o.dir, `record key ${JSON.stringify(key)} cannot name a file`);
      }
      return join(o.dir, `${name}.json`);
    };
    const durable = !o.perBoot && !o.unsynced;
    const decode = (path: string, text: string): T | undefined => {
      try {
        return decodeDocument(path, text, format);
      } catch (e) {
        if (!(e instanceof StateCorruptError) || !o.unsynced) throw e;
        if (statSync(path).mtimeMs >= bootedAt()) throw e;
        const movedTo = `${path}.earlier-boot-${Date.now()}`;
        renameSync(path, movedTo);
        o.unsynced.onDiscarded?.(path, movedTo, e);
        return undefined;
      }
    };
    const backing: Backing<T> = {
      load: () => {
        mkdirSync(o.dir, { recursive: true, mode: 0o700 });
        removeStaleTemps(o.dir);
        const records = new Map<string, T>();
        if (o.perBoot) dropEarlierBoot(o.dir);
        for (const name of readdirSync(o.dir).sort()) {
          if (!name.endsWith(".json") || name.startsWith(".")) continue;
          const path = join(o.dir, name);
          const text = readFileIfExists(path);
          if (text === undefined) continue;
          const rec = decode(path, text);
          if (rec === undefined) continue;
          const key = o.key(rec);
          if (`${nameOf(key)}.json` !== name) {
            throw new StateCorruptError(path, `holds the record of ${key}`, o.fix ? { fix: o.fix } : {});
          }
          records.set(key, rec);
        }
        return records;
      },
      save: (key, rec) => {
        if (rec === undefined) rmSync(fileOf(key), { force: true });
        else writeDocument(fileOf(key), rec, format, undefined, { durable });
      },
    };
    const store = new RecordStore(backing, o.key);
    if (o.legacyFile && existsSync(o.legacyFile.path)) {
      const { upgrade, fix } = o;
      const old = RecordStore.inFile({
        path: o.legacyFile.path,
        field: o.legacyFile.field,
        version: o.version,
        record: o.record,
        key: o.key,
        ...(upgrade ? { upgrade } : {}),
        ...(fix ? { fix } : {}),
      });
      for (const r of old.list()) if (!store.has(o.key(r))) store.put(r);
      rmSync(o.legacyFile.path);
    }
    return store;
  }

  /** Calls listener with the key after every committed change; returns the unsubscribe function. */
  subscribe(listener: (key: string) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get size(): number {
    return this.records.size;
  }

  has(key: string): boolean {
    return this.records.has(key);
  }

  get(key: string): T | undefined {
    const rec = this.records.get(key);
    return rec === undefined ? undefined : structuredClone(rec);
  }

  list(): T[] {
    return [...this.records.values()].map((r) => structuredClone(r));
  }

  /** The stored records themselves, read-only: for scans on hot paths that list() would copy. */
  peek(): Iterable<DeepReadonly<T>> {
    return this.records.values() as Iterable<DeepReadonly<T>>;
  }

  /**
   * Inserts or replaces the record under its key. A frozen record is kept as it is (the caller
   * froze it all the way down: deepFreeze), any other a frozen copy.
   */
  put(rec: T): void {
    const key = this.keyOf(rec);
    const before = this.records.get(key);
    this.records.set(key, Object.isFrozen(rec) ? rec : deepFreeze(structuredClone(rec)));
    this.commit(key, before);
  }

  /** Removes the record; returns it, or undefined when there was none. */
  delete(key: string): T | undefined {
    const before = this.records.get(key);
    if (before === undefined) return undefined;
    this.records.delete(key);
    this.commit(key, before);
    return before;
  }

  private commit(key: string, before: T | undefined): void {
    try {
      this.backing.save(key, this.records.get(key), this.records);
    } catch (e) {
      if (before === undefined) this.records.delete(key);
      else this.records.set(key, before);
      throw e;
    }
    for (const l of this.listeners) l(key);
  }
}
