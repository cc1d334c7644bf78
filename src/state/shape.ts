import { IpAddress, type IpFamily } from "../util/ip.js";
import { isObj } from "../util/json.js";

// Shape guards for what nkit reads back from its own state files: a file edited by hand, truncated
// by a full disk or written by another version must be refused with the field that is wrong, not
// half-loaded into a map that later hands out a live address twice. A guard returns a fresh value
// holding only the fields it knows, so stray keys never travel further.

/** Where a value failed its guard (`allocations[3].ipv4`) and what was expected there. */
export class ShapeMismatch extends Error {
  constructor(
    readonly at: string,
    readonly expected: string,
  ) {
    super(`${at || "(top level)"}: expected ${expected}`);
    this.name = "ShapeMismatch";
  }
}

/** Checks `value` (found at `at`) and returns it typed, or throws ShapeMismatch. */
export type Shape<T> = (value: unknown, at: string) => T;

const describe = (v: unknown): string =>
  v === null ? "null" : Array.isArray(v) ? "array" : typeof v === "string" ? JSON.stringify(v) : typeof v;

function fail(at: string, expected: string, v: unknown): never {
  throw new ShapeMismatch(at, `${expected}, got ${describe(v)}`);
}

export const string: Shape<string> = (v, at) => (typeof v === "string" ? v : fail(at, "a string", v));

export const boolean: Shape<boolean> = (v, at) => (typeof v === "boolean" ? v : fail(at, "a boolean", v));

/** A non-negative safe integer (ids, counters, timestamps). */
export const count: Shape<number> = (v, at) =>
  typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? v : fail(at, "a non-negative integer", v);

/** An IP address of the given family, in any text form Node accepts. */
export function ipAddress(family: IpFamily): Shape<string> {
  return (v, at) => {
    const text = string(v, at);
    return IpAddress.tryParse(text)?.family === family ? text : fail(at, `an IPv${family} address`, text);
  };
}

export function oneOf<const V extends readonly (string | number)[]>(...values: V): Shape<V[number]> {
  return (v, at) =>
    values.includes(v as V[number])
      ? (v as V[number])
      : fail(at, `one of ${values.map((x) => JSON.stringify(x)).join(", ")}`, v);
}

/** Absent (or undefined) stays absent; anything else must pass `inner`. */
export function optional<T>(inner: Shape<T>): Shape<T | undefined> {
  return (v, at) => (v === undefined ? undefined : inner(v, at));
}

export function arrayOf<T>(inner: Shape<T>): Shape<T[]> {
  return (v, at) => {
    if (!Array.isArray(v)) return fail(at, "an array", v);
    return v.map((item, i) => inner(item, `${at}[${i}]`));
  };
}

/** A plain object used as a string-keyed dictionary (labels). */
export function recordOf<T>(inner: Shape<T>): Shape<Record<string, T>> {
  return (v, at) => {
    if (!isObj(v)) return fail(at, "an object", v);
    const out: Record<string, T> = {};
    for (const [k, item] of Object.entries(v)) out[k] = inner(item, `${at}.${k}`);
    return out;
  };
}

/** Every key of T must have a guard (`-?`), so a field added to the interface cannot be forgotten. */
export type Fields<T> = { [K in keyof T]-?: Shape<T[K]> };

export function object<T extends object>(fields: Fields<T>): Shape<T> {
  return (v, at) => {
    if (!isObj(v)) return fail(at, "an object", v);
    const source = v;
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(fields) as (keyof T & string)[]) {
      const value = fields[key](source[key], at ? `${at}.${key}` : key);
      if (value !== undefined) out[key] = value;
    }
    return out as T;
  };
}
