import { z } from "zod";
import { IpAddress, type IpFamily } from "../util/ip.js";
import { type ErrorParam, pathText, reportedIssue } from "../util/schema.js";

// The vocabulary of nkit's state-file schemas: a file edited by hand, truncated by a full disk or
// written by another version must be refused with the field that is wrong, not half-loaded into a
// map that later hands out a live address twice. Objects keep only the fields they declare, so stray
// keys never travel further. Owners describe their records with these (typed by the record's
// interface) rather than with zod directly, so every state file words a mismatch the same way.

/** A schema of a state-file value whose parsed form is T. */
export type Shape<T> = z.ZodType<T>;

const describe = (v: unknown): string =>
  v === null ? "null" : Array.isArray(v) ? "array" : typeof v === "string" ? JSON.stringify(v) : typeof v;

const expected = (what: string): ErrorParam => ({
  error: (iss) => `expected ${what}, got ${describe(iss.input)}`,
});

/** `allocations[3].ipv4: expected an IPv4 address, got "fd47::5"`: what StateCorruptError says. */
export function shapeMismatch(error: z.ZodError): string {
  const issue = reportedIssue(error);
  return `${pathText(issue.path) || "(top level)"}: ${issue.message}`;
}

export const string: Shape<string> = z.string(expected("a string"));

export const boolean: Shape<boolean> = z.boolean(expected("a boolean"));

const nonNegative = expected("a non-negative integer");
/** A non-negative safe integer (ids, counters, timestamps). */
export const count: Shape<number> = z.int(nonNegative).min(0, nonNegative);

const isFamily = (text: string, family: IpFamily): boolean => {
  return IpAddress.tryParse(text)?.family === family;
};

/** An IP address of the given family, in any text form Node accepts. */
export function ipAddress(family: IpFamily): Shape<string> {
  return z
    .string(expected("a string"))
    .refine((t) => isFamily(t, family), expected(`an IPv${family} address`));
}

export function oneOf<const V extends readonly (string | number)[]>(...values: V): Shape<V[number]> {
  return z.literal(values, expected(`one of ${values.map((x) => JSON.stringify(x)).join(", ")}`));
}

/** Absent (or undefined) stays absent; anything else must pass `inner`. */
export function optional<T>(inner: Shape<T>): Shape<T | undefined> {
  return inner.optional();
}

export function arrayOf<T>(inner: Shape<T>): Shape<T[]> {
  return z.array(inner, expected("an array"));
}

/** A plain object used as a string-keyed dictionary (labels). */
export function recordOf<T>(inner: Shape<T>): Shape<Record<string, T>> {
  return z.record(z.string(), inner, expected("an object"));
}

/** Every key of T must have a schema (`-?`), so a field added to the interface cannot be forgotten. */
type Fields<T> = { [K in keyof T]-?: Shape<T[K]> };

export function object<T extends object>(fields: Fields<T>): Shape<T> {
  // zod infers an object's type from its fields; these are typed from T's keys instead, which zod's
  // inference cannot see through, so the result is T by construction of Fields<T>.
  return z.object(fields as Record<string, Shape<unknown>>, expected("an object")) as unknown as Shape<T>;
}
