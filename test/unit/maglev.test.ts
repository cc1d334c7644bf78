// Maglev tables: equal shares (round-robin filling gives every backend floor or ceil of M/N
// entries), little movement when a backend leaves, and the table depends only on the names.
import { describe, expect, it } from "vitest";
import { MAGLEV_TABLE_SIZE, maglevTable } from "../../src/services/maglev.js";

const names = (n: number) => Array.from({ length: n }, (_, i) => `10.47.0.${i + 1}:8080`);

function shares(table: Uint32Array, n: number): number[] {
  const c = new Array<number>(n).fill(0);
  for (const slot of table) c[slot] = (c[slot] as number) + 1;
  return c;
}

describe("maglevTable", () => {
  it("fills M = 16381 entries with backends sharing floor or ceil of M/N each", () => {
    for (const n of [1, 2, 3, 7, 100]) {
      const t = maglevTable(names(n));
      expect(t.length).toBe(MAGLEV_TABLE_SIZE);
      const s = shares(t, n);
      expect(Math.max(...s) - Math.min(...s), `n=${n}`).toBeLessThanOrEqual(1);
      expect(s.reduce((a, b) => a + b, 0)).toBe(MAGLEV_TABLE_SIZE);
    }
  });

  it("is the same table for the same backends (another host computes the same)", () => {
    expect(Buffer.from(maglevTable(names(5)).buffer)).toEqual(Buffer.from(maglevTable(names(5)).buffer));
  });

  it("moves few entries of the remaining backends when one of ten leaves", () => {
    const before = maglevTable(names(10));
    const rest = names(10).filter((_, i) => i !== 3);
    const after = maglevTable(rest);
    let kept = 0;
    let survivors = 0;
    for (let i = 0; i < before.length; i++) {
      const was = names(10)[before[i] as number];
      if (was === names(10)[3]) continue; // the leaving backend's entries must move
      survivors++;
      if (rest[after[i] as number] === was) kept++;
    }
    // The paper reports a few percent of extra movement; allow 10%.
    expect(kept / survivors).toBeGreaterThan(0.9);
  });

  it("refuses sizes that are not prime, no backends, and more backends than entries", () => {
    expect(() => maglevTable(names(2), 16380)).toThrow(/not a prime/);
    expect(() => maglevTable([])).toThrow(/at least one backend/);
    expect(() => maglevTable(names(20), 13)).toThrow(/do not fit/);
  });
});
