import { spawn } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { IpamConflictError, IpamExhaustedError, StateCorruptError } from "../../src/errors.js";
import { Ipam } from "../../src/ipam/ipam.js";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "nkit-ipam-"));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const open = (cidrs: string[] = ["10.47.0.0/24", "fd47::/64"]) =>
  Ipam.open({ podCIDRs: cidrs, stateDir: join(dir, "ipam") });

describe("Ipam", () => {
  it("allocates one address per family, idempotently per endpoint id", () => {
    const ipam = open();
    const a = ipam.allocate("pod-a");
    expect(a).toMatchObject({ id: "pod-a", ipv4: "10.47.0.1", ipv6: "fd47::1" });
    expect(a.createdAt).toBeGreaterThan(Date.now() - 60_000);
    expect(ipam.allocate("pod-a")).toEqual(a);
    const b = ipam.allocate("pod-b");
    expect(b.ipv4).toBe("10.47.0.2");
    expect(b.ipv6).toBe("fd47::2");
    expect(ipam.usage()).toEqual([
      { cidr: "10.47.0.0/24", family: 4, size: 254n, used: 2 },
      { cidr: "fd47::/64", family: 6, size: (1n << 64n) - 1n, used: 2 },
    ]);
  });

  it("runs v4-only when no v6 CIDR is configured", () => {
    const ipam = open(["10.47.0.0/24"]);
    const x = ipam.allocate("x");
    expect(x.ipv4).toBe("10.47.0.1");
    expect(x.ipv6).toBeUndefined();
  });

  it("honours an explicit request when free and refuses a taken or foreign one", () => {
    const ipam = open();
    expect(ipam.allocate("a", { ipv4: "10.47.0.77", ipv6: "fd47::0:77" })).toMatchObject({
      ipv4: "10.47.0.77",
      ipv6: "fd47::77",
    });
    expect(() => ipam.allocate("b", { ipv4: "10.47.0.77" })).toThrow(IpamConflictError);
    expect(() => ipam.allocate("b", { ipv4: "10.47.0.77" })).toThrow(/assigned to endpoint a/);
    expect(() => ipam.allocate("b", { ipv4: "10.99.0.1" })).toThrow(/not an assignable address/);
    expect(() => ipam.allocate("b", { ipv4: "10.47.0.255" })).toThrow(/not an assignable address/);
    expect(() => ipam.allocate("a", { ipv4: "10.47.0.78" })).toThrow(/already holds 10.47.0.77/);
    // A refused request leaves no trace.
    expect(ipam.get("b")).toBeUndefined();
  });

  it("raises a typed exhaustion error naming the CIDR and the count in use", () => {
    const ipam = open(["10.47.0.0/29"]);
    for (let i = 0; i < 6; i++) ipam.allocate(`p${i}`);
    let err: unknown;
    try {
      ipam.allocate("one-too-many");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(IpamExhaustedError);
    expect((err as IpamExhaustedError).cidr).toBe("10.47.0.0/29");
    expect((err as IpamExhaustedError).inUse).toBe(6);
    expect((err as Error).message).toMatch(/no free address in 10.47.0.0\/29: 6 in use/);
    expect(ipam.get("one-too-many")).toBeUndefined();
  });

  it("releases, does not immediately reuse, and persists across reopen", () => {
    const ipam = open(["10.47.0.0/29"]);
    ipam.allocate("a");
    ipam.allocate("b");
    expect(ipam.release("a")).toMatchObject({ ipv4: "10.47.0.1" });
    expect(ipam.release("a")).toBeUndefined();
    expect(ipam.allocate("c").ipv4).toBe("10.47.0.3");
    const again = open(["10.47.0.0/29"]);
    expect(again.list().map((x) => [x.id, x.ipv4])).toEqual([
      ["b", "10.47.0.2"],
      ["c", "10.47.0.3"],
    ]);
    expect(again.allocate("b").ipv4).toBe("10.47.0.2");
  });

  it("keeps allocations outside a changed CIDR and reports them as foreign", () => {
    open(["10.47.0.0/24"]).allocate("old");
    const ipam = open(["10.48.0.0/24"]);
    expect(ipam.foreign().map((a) => a.id)).toEqual(["old"]);
  });

  it("refuses a corrupt allocation file instead of guessing", () => {
    mkdirSync(join(dir, "ipam"));
    writeFileSync(join(dir, "ipam", "pod-a.json"), "{not json");
    expect(() => open()).toThrow(StateCorruptError);
    expect(() => open()).toThrow(/is unreadable \(invalid JSON\); restore it from a backup/);
  });

  it("keeps one file per allocation, any id, and moves the one-file state of earlier builds in", () => {
    writeFileSync(
      join(dir, "ipam.json"),
      JSON.stringify({ version: 1, allocations: [{ id: "old", ipv4: "10.47.0.9", createdAt: 1 }] }),
    );
    const ipam = open();
    expect(existsSync(join(dir, "ipam.json"))).toBe(false);
    expect(ipam.get("old")?.ipv4).toBe("10.47.0.9");
    const odd = ipam.allocate("ns/pod a");
    expect(readdirSync(join(dir, "ipam")).filter((n) => n.startsWith("~"))).toHaveLength(1);
    const again = open();
    expect(again.get("ns/pod a")).toEqual(odd);
    expect(again.allocate("new").ipv4).not.toBe("10.47.0.9");
    again.release("ns/pod a");
    expect(readdirSync(join(dir, "ipam")).sort()).toEqual(["new.json", "old.json"]);
  });

  it("rejects bad configuration with the key and a fix", () => {
    expect(() => open([])).toThrow(/at least one CIDR/);
    expect(() => open(["10.0.0.0/24", "10.1.0.0/24"])).toThrow(/more than one IPv4/);
  });

  it("survives SIGKILL at arbitrary points without tearing or double allocation", async () => {
    const child = join(__dirname, "..", "..", "dist", "ipam", "ipam.js");
    if (!existsSync(child)) throw new Error("dist/ is missing: run `npm run build:ts` before the unit tests");
    const stateDir = join(dir, "ipam");
    const script = `
      import { Ipam } from ${JSON.stringify(child)};
      const ipam = Ipam.open({ podCIDRs: ["10.47.0.0/16", "fd47::/64"], stateDir: ${JSON.stringify(stateDir)} });
      let i = 0;
      for (;;) { ipam.allocate("ep-" + (i++)); if (i % 3 === 0) ipam.release("ep-" + (i - 2)); }
    `;
    for (let round = 0; round < 5; round++) {
      const proc = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: "ignore" });
      // Kill it mid-stream: once it is writing (a loaded machine may take a while to start node),
      // after a different extra delay each round.
      const deadline = Date.now() + 15_000;
      const written = () => existsSync(stateDir) && readdirSync(stateDir).some((n) => n.endsWith(".json"));
      while (!written() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      await new Promise((r) => setTimeout(r, 20 + round * 37));
      proc.kill("SIGKILL");
      await new Promise((r) => proc.once("exit", r));
      // Every file whole (JSON.parse throws on a torn one), no address twice.
      const allocations = readdirSync(stateDir)
        .filter((n) => n.endsWith(".json"))
        .map((n) => JSON.parse(readFileSync(join(stateDir, n), "utf8")) as { ipv4: string; ipv6: string });
      const v4 = allocations.map((a) => a.ipv4);
      const v6 = allocations.map((a) => a.ipv6);
      expect(new Set(v4).size).toBe(v4.length);
      expect(new Set(v6).size).toBe(v6.length);
      // The next process starts from that state and must not collide with it.
      const ipam = Ipam.open({ podCIDRs: ["10.47.0.0/16", "fd47::/64"], stateDir });
      const fresh = ipam.allocate(`after-${round}`);
      expect(v4).not.toContain(fresh.ipv4);
      ipam.release(`after-${round}`);
    }
  });
});

describe("stale temp files", () => {
  it("are removed at open when their writer is dead, and kept while it lives", async () => {
    const { removeStaleTemps } = await import("../../src/state/atomic-file.js");
    const d = mkdtempSync(join(tmpdir(), "nkit-tmp-"));
    try {
      writeFileSync(join(d, ".ipam.json.tmp-999999999-deadbeef"), "{");
      writeFileSync(join(d, `.ipam.json.tmp-${process.pid}-cafe`), "{");
      writeFileSync(join(d, "ipam.json"), JSON.stringify({ version: 1, allocations: [] }));
      expect(removeStaleTemps(d)).toBe(1);
      expect(existsSync(join(d, ".ipam.json.tmp-999999999-deadbeef"))).toBe(false);
      expect(existsSync(join(d, `.ipam.json.tmp-${process.pid}-cafe`))).toBe(true);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});
