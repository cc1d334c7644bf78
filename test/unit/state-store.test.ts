// The one state store every owner uses (src/state/json-store.ts): how files are read back (JSON,
// layout version, shape) and how changes are made durable, on a real file system in a temp dir.
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { openAttachmentStore } from "../../src/cni/attachments.js";
import { openEndpointStore } from "../../src/datapath/store.js";
import { StateCorruptError } from "../../src/errors.js";
import { Ipam } from "../../src/ipam/ipam.js";
import {
  type DocumentFormat,
  decodeDocument,
  deepFreeze,
  fileNameOfKey,
  RecordStore,
  readDocument,
} from "../../src/state/json-store.js";
import {
  arrayOf,
  count,
  ipAddress,
  object,
  oneOf,
  optional,
  recordOf,
  string,
} from "../../src/state/shape.js";

interface Pet {
  name: string;
  legs: number;
  kind: "cat" | "dog";
  tag?: string;
}

const petShape = object<Pet>({ name: string, legs: count, kind: oneOf("cat", "dog"), tag: optional(string) });

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "nkit-state-"));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function corruptDetail(fn: () => unknown): { path: string; message: string } {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(StateCorruptError);
    const err = e as StateCorruptError;
    expect(err.code).toBe("NKIT_STATE_CORRUPT");
    return { path: err.path, message: err.message };
  }
  throw new Error("expected a StateCorruptError");
}

describe("shape guards", () => {
  const format: DocumentFormat<{ pets: Pet[] }> = { version: 1, shape: object({ pets: arrayOf(petShape) }) };

  it("names the field that is wrong and what was found", () => {
    const text = JSON.stringify({
      version: 1,
      pets: [
        { name: "a", legs: 4, kind: "cat" },
        { name: "b", legs: -1, kind: "dog" },
      ],
    });
    const d = corruptDetail(() => decodeDocument("/x/pets.json", text, format));
    expect(d.path).toBe("/x/pets.json");
    expect(d.message).toContain("pets[1].legs: expected a non-negative integer, got number");
    expect(d.message).toContain("/x/pets.json");
  });

  it("refuses a value outside an enumeration and a missing required field", () => {
    const bad = (pet: unknown) => JSON.stringify({ version: 1, pets: [pet] });
    expect(
      corruptDetail(() => decodeDocument("p", bad({ name: "a", legs: 4, kind: "cow" }), format)).message,
    ).toContain('pets[0].kind: expected one of "cat", "dog", got "cow"');
    expect(corruptDetail(() => decodeDocument("p", bad({ legs: 4, kind: "cat" }), format)).message).toContain(
      "pets[0].name: expected a string, got undefined",
    );
  });

  it("drops keys it does not know and keeps optional ones absent", () => {
    const text = JSON.stringify({
      version: 1,
      pets: [{ name: "a", legs: 4, kind: "cat", extra: { deep: 1 } }],
    });
    const doc = decodeDocument("p", text, format);
    expect(doc.pets[0]).toEqual({ name: "a", legs: 4, kind: "cat" });
    expect(Object.keys(doc.pets[0] ?? {})).not.toContain("tag");
  });

  it("checks address families and dictionaries", () => {
    const f: DocumentFormat<{ v4: string; labels: Record<string, string> }> = {
      version: 1,
      shape: object({ v4: ipAddress(4), labels: recordOf(string) }),
    };
    expect(
      decodeDocument("p", JSON.stringify({ version: 1, v4: "10.0.0.1", labels: { a: "b" } }), f),
    ).toEqual({
      v4: "10.0.0.1",
      labels: { a: "b" },
    });
    expect(
      corruptDetail(() => decodeDocument("p", JSON.stringify({ version: 1, v4: "fd00::1", labels: {} }), f))
        .message,
    ).toContain('v4: expected an IPv4 address, got "fd00::1"');
    expect(
      corruptDetail(() =>
        decodeDocument("p", JSON.stringify({ version: 1, v4: "10.0.0.1", labels: { a: 1 } }), f),
      ).message,
    ).toContain("labels.a: expected a string, got number");
  });
});

describe("layout versions", () => {
  const v2: DocumentFormat<{ names: string[] }> = {
    version: 2,
    shape: object({ names: arrayOf(string) }),
    upgrade: (from, doc) => {
      expect(from).toBe(1);
      return { names: String(doc.csv).split(",") };
    },
  };

  it("refuses invalid JSON, a non-object and a missing version", () => {
    expect(corruptDetail(() => decodeDocument("p", "{not json", v2)).message).toContain("invalid JSON");
    expect(corruptDetail(() => decodeDocument("p", "[1]", v2)).message).toContain("not a JSON object");
    expect(corruptDetail(() => decodeDocument("p", '{"names":[]}', v2)).message).toContain(
      "no layout version",
    );
  });

  it("refuses a file written by a newer nkit, saying so", () => {
    expect(corruptDetail(() => decodeDocument("p", '{"version":3,"names":[]}', v2)).message).toContain(
      "layout version 3 was written by a newer nkit; this one reads up to 2",
    );
  });

  it("upgrades an older layout step by step, and refuses one it cannot upgrade", () => {
    expect(decodeDocument("p", '{"version":1,"csv":"a,b"}', v2)).toEqual({ names: ["a", "b"] });
    const { upgrade: _, ...noUpgrade } = v2;
    expect(corruptDetail(() => decodeDocument("p", '{"version":1,"csv":"a"}', noUpgrade)).message).toContain(
      "layout version 1 is no longer read",
    );
  });

  it("reads nothing from a file that does not exist", () => {
    expect(readDocument(join(dir, "absent.json"), v2)).toBeUndefined();
  });
});

describe("RecordStore", () => {
  const inFile = (path = join(dir, "pets.json")) =>
    RecordStore.inFile({ path, field: "pets", version: 1, record: petShape, key: (p) => p.name });
  const inDir = () =>
    RecordStore.inDirectory({ dir: join(dir, "pets"), version: 1, record: petShape, key: (p) => p.name });

  for (const [kind, open] of [
    ["one file", () => inFile()],
    ["one file per record", inDir],
  ] as const) {
    it(`${kind}: writes through, reads back after reopening, deletes`, () => {
      const s = open();
      s.put({ name: "tom", legs: 4, kind: "cat" });
      s.put({ name: "rex", legs: 3, kind: "dog", tag: "x" });
      s.put({ name: "tom", legs: 3, kind: "cat" });
      const again = open();
      expect(again.list().sort((a, b) => a.name.localeCompare(b.name))).toEqual([
        { name: "rex", legs: 3, kind: "dog", tag: "x" },
        { name: "tom", legs: 3, kind: "cat" },
      ]);
      expect(again.delete("tom")).toEqual({ name: "tom", legs: 3, kind: "cat" });
      expect(again.delete("tom")).toBeUndefined();
      expect(
        open()
          .list()
          .map((p) => p.name),
      ).toEqual(["rex"]);
    });

    it(`${kind}: hands out copies, so a caller cannot change what is stored`, () => {
      const s = open();
      s.put({ name: "tom", legs: 4, kind: "cat" });
      const got = s.get("tom");
      if (got) got.legs = 9;
      for (const p of s.list()) p.legs = 8;
      expect(s.get("tom")?.legs).toBe(4);
    });
  }

  it("keeps a frozen record as it is and a frozen copy of any other", () => {
    const s = inDir();
    const cat = deepFreeze({ name: "tom", legs: 4, kind: "cat" as const });
    s.put(cat);
    const dog = { name: "rex", legs: 3, kind: "dog" as const };
    s.put(dog);
    const kept = new Map([...s.peek()].map((p) => [p.name, p]));
    expect(kept.get("tom")).toBe(cat);
    expect(kept.get("rex")).not.toBe(dog);
    expect(Object.isFrozen(kept.get("rex"))).toBe(true);
    dog.legs = 9;
    expect(s.get("rex")?.legs).toBe(3);
    // Records read from disk are frozen too.
    for (const p of inDir().peek()) expect(Object.isFrozen(p)).toBe(true);
  });

  it("keeps memory unchanged when the write fails", () => {
    // The file's directory turns into a regular file: every write fails, as on a read-only disk.
    const s = inFile(join(dir, "sub", "pets.json"));
    writeFileSync(join(dir, "sub"), "");
    expect(() => s.put({ name: "tom", legs: 4, kind: "cat" })).toThrow();
    expect(s.list()).toEqual([]);

    const ok = inFile();
    ok.put({ name: "tom", legs: 4, kind: "cat" });
    rmSync(join(dir, "pets.json"));
    mkdirSync(join(dir, "pets.json"));
    expect(() => ok.put({ name: "tom", legs: 1, kind: "cat" })).toThrow();
    expect(() => ok.delete("tom")).toThrow();
    expect(ok.get("tom")).toEqual({ name: "tom", legs: 4, kind: "cat" });
  });

  it("tells subscribers about committed changes only", () => {
    const s = inFile();
    const seen: string[] = [];
    const off = s.subscribe((k) => seen.push(k));
    s.put({ name: "tom", legs: 4, kind: "cat" });
    s.delete("tom");
    s.delete("tom");
    rmSync(join(dir, "pets.json"), { force: true });
    mkdirSync(join(dir, "pets.json"));
    expect(() => s.put({ name: "rex", legs: 4, kind: "dog" })).toThrow();
    off();
    rmSync(join(dir, "pets.json"), { recursive: true });
    s.put({ name: "max", legs: 4, kind: "dog" });
    expect(seen).toEqual(["tom", "tom"]);
  });

  it("per-boot records: kept within the boot, dropped when the directory is an earlier boot's", () => {
    const petsDir = join(dir, "pets");
    const perBoot = () =>
      RecordStore.inDirectory({
        dir: petsDir,
        version: 1,
        record: petShape,
        key: (p) => p.name,
        perBoot: true,
      });
    const boot = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
    // A directory an earlier build wrote (no mark) is this boot's: its records stay, the mark comes.
    mkdirSync(petsDir);
    writeFileSync(
      join(petsDir, "tom.json"),
      JSON.stringify({ version: 1, name: "tom", legs: 4, kind: "cat" }),
    );
    const s = perBoot();
    expect(s.list().map((p) => p.name)).toEqual(["tom"]);
    expect(readFileSync(join(petsDir, ".boot-id"), "utf8").trim()).toBe(boot);
    s.put({ name: "rex", legs: 3, kind: "dog" });
    expect(
      perBoot()
        .list()
        .map((p) => p.name)
        .sort(),
    ).toEqual(["rex", "tom"]);
    // After a reboot (another boot id) every record is gone, unread: even a torn one.
    writeFileSync(join(petsDir, ".boot-id"), "0c0ffee0-0000-4000-8000-000000000000\n");
    writeFileSync(join(petsDir, "max.json"), "");
    expect(perBoot().list()).toEqual([]);
    expect(readdirSync(petsDir)).toEqual([".boot-id"]);
    expect(readFileSync(join(petsDir, ".boot-id"), "utf8").trim()).toBe(boot);
  });

  it("unsynced records: one torn before this boot is moved aside and the rest kept; one torn in this boot is refused", () => {
    const petsDir = join(dir, "pets");
    const discarded: string[] = [];
    const unsynced = () =>
      RecordStore.inDirectory({
        dir: petsDir,
        version: 1,
        record: petShape,
        key: (p) => p.name,
        unsynced: { onDiscarded: (file, movedTo) => discarded.push(`${file} -> ${movedTo}`) },
      });
    const s = unsynced();
    s.put({ name: "tom", legs: 4, kind: "cat" });
    s.put({ name: "rex", legs: 3, kind: "dog" });
    expect(unsynced().get("tom")?.legs).toBe(4);
    // What a power loss leaves of a renamed but unsynced file on some filesystems: nothing.
    const tom = join(petsDir, "tom.json");
    writeFileSync(tom, "");
    expect(corruptDetail(unsynced).path).toBe(tom);
    expect(discarded).toEqual([]);
    const btime = Number(/^btime (\d+)$/m.exec(readFileSync("/proc/stat", "utf8"))?.[1]);
    const before = new Date((btime - 3600) * 1000);
    utimesSync(tom, before, before);
    expect(
      unsynced()
        .list()
        .map((p) => p.name),
    ).toEqual(["rex"]);
    const aside = readdirSync(petsDir).filter((n) => n.startsWith("tom.json.earlier-boot-"));
    expect(aside).toHaveLength(1);
    expect(discarded).toEqual([`${tom} -> ${join(petsDir, aside[0] ?? "")}`]);
    // A durable store never guesses: the same torn file from an earlier boot is refused.
    writeFileSync(tom, "");
    utimesSync(tom, before, before);
    expect(corruptDetail(inDir).path).toBe(tom);
  });

  it("moves the records of an earlier build's one-file store in, and encodes keys that are no file name", () => {
    const petsDir = join(dir, "pets");
    writeFileSync(
      `${petsDir}.json`,
      JSON.stringify({ version: 1, pets: [{ name: "tom", legs: 4, kind: "cat" }] }),
    );
    const open = () =>
      RecordStore.inDirectory({
        dir: petsDir,
        version: 1,
        record: petShape,
        key: (p) => p.name,
        fileName: fileNameOfKey,
        legacyFile: { path: `${petsDir}.json`, field: "pets" },
      });
    open().put({ name: "../.rex/", legs: 3, kind: "dog" });
    expect(existsSync(`${petsDir}.json`)).toBe(false);
    expect(
      open()
        .list()
        .map((p) => p.name)
        .sort(),
    ).toEqual(["../.rex/", "tom"]);
    expect(readdirSync(petsDir).sort()).toEqual(["tom.json", `${fileNameOfKey("../.rex/")}.json`]);
    expect(fileNameOfKey("../.rex/")).toMatch(/^~[0-9a-f]{64}$/);
  });

  it("refuses a file holding two records under one key", () => {
    const path = join(dir, "pets.json");
    const pet = { name: "tom", legs: 4, kind: "cat" };
    writeFileSync(path, JSON.stringify({ version: 1, pets: [pet, pet] }));
    expect(corruptDetail(() => inFile()).message).toContain("two records for tom");
  });

  it("refuses a record file whose name does not match the record, naming the file", () => {
    mkdirSync(join(dir, "pets"));
    const path = join(dir, "pets", "rex.json");
    writeFileSync(path, JSON.stringify({ version: 1, name: "tom", legs: 4, kind: "cat" }));
    const d = corruptDetail(inDir);
    expect(d.path).toBe(path);
    expect(d.message).toContain("holds the record of tom");
  });

  it("removes temp files a killed writer left, and only those", () => {
    mkdirSync(join(dir, "pets"));
    // pid 2^22+1 is above the kernel's pid_max, so no live process owns it.
    const stale = ".tom.json.tmp-4194305-0a0b0c0d";
    writeFileSync(join(dir, "pets", stale), "{");
    writeFileSync(join(dir, "pets", "notes.txt"), "kept");
    inDir();
    expect(readdirSync(join(dir, "pets")).sort()).toEqual(["notes.txt"]);
  });
});

describe("every owner refuses a corrupt file with its path", () => {
  it("IPAM: an address of the wrong family (also in an earlier build's ipam.json), and one address held twice", () => {
    const stateDir = join(dir, "ipam");
    const legacy = join(dir, "ipam.json");
    writeFileSync(legacy, JSON.stringify({ version: 1, allocations: [{ id: "a", ipv4: "fd47::5" }] }));
    const open = () => Ipam.open({ podCIDRs: ["10.47.0.0/24", "fd47::/64"], stateDir });
    let d = corruptDetail(open);
    expect(d.path).toBe(legacy);
    expect(d.message).toContain("allocations[0].ipv4: expected an IPv4 address");
    rmSync(legacy);
    writeFileSync(join(stateDir, "a.json"), JSON.stringify({ version: 1, id: "a", ipv4: "fd47::5" }));
    d = corruptDetail(open);
    expect(d.path).toBe(join(stateDir, "a.json"));
    expect(d.message).toContain("ipv4: expected an IPv4 address");
    writeFileSync(join(stateDir, "a.json"), JSON.stringify({ version: 1, id: "a", ipv4: "10.47.0.5" }));
    writeFileSync(join(stateDir, "b.json"), JSON.stringify({ version: 1, id: "b", ipv4: "10.47.0.5" }));
    d = corruptDetail(open);
    expect(d.message).toContain("10.47.0.5 is held by two allocations");
  });

  it("CNI attachments: a mode nkit does not have", () => {
    const attDir = join(dir, "cni-attachments");
    const path = join(attDir, "c1.json");
    const att = {
      version: 1,
      containerId: "c1",
      ifName: "eth0",
      network: "nkit",
      mode: "bridge",
      netns: "/proc/1/ns/net",
      addresses: {},
      portMappings: [],
      createdAt: "2026-01-01T00:00:00Z",
    };
    mkdirSync(attDir);
    writeFileSync(path, JSON.stringify(att));
    const d = corruptDetail(() => openAttachmentStore(attDir));
    expect(d.path).toBe(path);
    expect(d.message).toContain('mode: expected one of "ipam", "wire", got "bridge"');
  });

  it("endpoint records: a truncated file", () => {
    mkdirSync(join(dir, "endpoints"));
    const path = join(dir, "endpoints", "nk0123.json");
    writeFileSync(path, '{"version":1,"id":"x","epN');
    const d = corruptDetail(() => openEndpointStore(dir));
    expect(d.path).toBe(path);
    expect(d.message).toContain("invalid JSON");
  });

  it("the layouts on disk stay what earlier versions wrote", () => {
    const stateDir = join(dir, "ipam");
    Ipam.open({ podCIDRs: ["10.47.0.0/24"], stateDir }).allocate("a", { owner: "cri" });
    const doc = JSON.parse(readFileSync(join(stateDir, "a.json"), "utf8")) as { version: number; id: string };
    expect(doc.version).toBe(1);
    expect(doc.id).toBe("a");
  });
});
