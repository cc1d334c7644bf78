// The TS side names a raw errno exactly as the addon's C table does (native/src/common.c), so one
// failure reads the same whether it came back from the addon or from a netlink reply or a probe.
import { readFileSync } from "node:fs";
import { constants } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { errnoName } from "../../src/util/errno.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const C_TABLE = readFileSync(join(ROOT, "native", "src", "common.c"), "utf8");
const C_NAMES = [...C_TABLE.matchAll(/\bE\((E[A-Z0-9]+)\)/g)].map((m) => m[1]!);
const ERRNO: Record<string, number> = constants.errno;

describe("errno names", () => {
  it("reads the C table", () => {
    expect(C_NAMES.length).toBeGreaterThan(50);
    expect(C_NAMES).toContain("EEXIST");
  });

  it("agrees with the C table for every errno Node knows", () => {
    const disagree = C_NAMES.filter((name) => ERRNO[name] !== undefined)
      .map((name) => ({ name, ts: errnoName(ERRNO[name]!) }))
      .filter((r) => r.ts !== r.name);
    expect(disagree).toEqual([]);
  });

  it("names the kernel-only codes as the addon does, and signs do not matter", () => {
    expect(C_TABLE).toMatch(/case 524: return "ENOTSUPP"/);
    expect(errnoName(524)).toBe("ENOTSUPP");
    expect(errnoName(-95)).toBe("EOPNOTSUPP");
    expect(errnoName(-17)).toBe("EEXIST");
    expect(errnoName(4000)).toBe("errno 4000");
  });
});
