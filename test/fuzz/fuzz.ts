// Shared by the TypeScript fuzz targets (fast-check, property-based): how many cases a property runs
// (NKIT_FUZZ_RUNS; the short CI profile by default, `npm run fuzz:full` a million) and the invariant
// every target checks: an input is either accepted or refused with an NkitError carrying a stable
// code. Anything else thrown (a TypeError, a RangeError, a stack overflow) is a defect.
import fc from "fast-check";
import { NkitError } from "../../src/errors.js";

export const RUNS = Number(process.env.NKIT_FUZZ_RUNS ?? 2000);

/** fast-check's options for one property: RUNS cases, a seed from NKIT_FUZZ_SEED when replaying. */
export function params(): fc.Parameters<unknown> {
  const seed = process.env.NKIT_FUZZ_SEED;
  return { numRuns: RUNS, ...(seed ? { seed: Number(seed) } : {}), endOnFailure: true };
}

/** Runs fn; true when it returned, false when it refused with an NkitError; anything else rethrows. */
export function acceptsOrRefuses(fn: () => unknown): boolean {
  try {
    fn();
    return true;
  } catch (e) {
    if (e instanceof NkitError && /^NKIT_[A-Z_]+$/.test(e.code)) return false;
    throw e;
  }
}

/** Values shaped like what YAML and JSON decode to, with the odd number and string thrown in. */
export const jsonish: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small" },
    fc.constant(null),
    fc.boolean(),
    fc.integer(),
    fc.double(),
    fc.constantFrom(-1, 0, 1, 65535, 65536, 2 ** 31, 2 ** 53, Number.NaN, Number.POSITIVE_INFINITY),
    fc.string(),
    fc.constantFrom("", "0", "auto", "10.0.0.0/8", "fd00::/8", "::", "0.0.0.0", "a".repeat(300), "\u0000"),
    fc.array(tie("value"), { maxLength: 4 }),
    fc.dictionary(fc.string({ maxLength: 12 }), tie("value"), { maxKeys: 4 }),
  ),
})).value;

/** `base` with the value at one random path replaced (or a key added) by a jsonish value. */
export function mutated(base: unknown): fc.Arbitrary<unknown> {
  const paths: (string | number)[][] = [];
  const walk = (v: unknown, at: (string | number)[]) => {
    paths.push(at);
    if (Array.isArray(v)) {
      for (const [i, x] of v.entries()) walk(x, [...at, i]);
    } else if (v && typeof v === "object") {
      for (const [k, x] of Object.entries(v)) walk(x, [...at, k]);
    }
  };
  walk(base, []);
  return fc
    .tuple(fc.constantFrom(...paths), jsonish, fc.string({ maxLength: 10 }))
    .map(([path, value, extra]) => {
      const copy = structuredClone(base) as Record<string | number, unknown>;
      if (path.length === 0) return value;
      let cur: Record<string | number, unknown> = copy;
      for (const p of path.slice(0, -1)) cur = cur[p] as Record<string | number, unknown>;
      const last = path[path.length - 1]!;
      if (extra && typeof cur === "object" && !Array.isArray(cur)) cur[extra] = value;
      else cur[last] = value;
      return copy;
    });
}
