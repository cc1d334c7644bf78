// What nkit's zod schemas share: how an issue is located, which issue a user is told about, and how
// an issue carries the parts nkit's errors have. zod gives an issue one message string, but a config
// or service error names a problem and its fix separately, and a CNI error has a code and details;
// a Voice writes those parts into the message as JSON where the schema is defined and reads them
// back where the issue becomes a typed error, so every text stays next to the rule it explains.
import { z } from "zod";

type Issue = z.core.$ZodIssue;

/** What an `error` function of a schema sees when zod reports an issue (the path from the parse root). */
export interface IssueContext {
  readonly input?: unknown;
  readonly path?: PropertyKey[] | undefined;
}

/** A zod `error` parameter. */
export interface ErrorParam {
  error: (iss: IssueContext) => string;
}

/** `services[2].ports[0].port`: a path as messages write it, after `prefix` (where the value came from). */
export function pathText(path: readonly PropertyKey[] = [], prefix = ""): string {
  let out = prefix;
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`;
    else out += out ? `.${String(key)}` : String(key);
  }
  return out;
}

/** An issue's path, down to the offending key when the issue is about keys an object does not know. */
export function issuePath(issue: Issue): PropertyKey[] {
  return issue.code === "unrecognized_keys" && issue.keys[0] !== undefined
    ? [...issue.path, issue.keys[0]]
    : issue.path;
}

const within = (outer: readonly PropertyKey[], inner: readonly PropertyKey[]): boolean =>
  outer.length <= inner.length && outer.every((k, i) => k === inner[i]);

/**
 * The issue to report: the first, except that a key an enclosing object does not know comes before
 * anything inside that object (zod lists unknown keys after the fields), because a misspelt key
 * usually explains what looks wrong below it.
 */
export function reportedIssue(error: z.ZodError): Issue {
  const first = error.issues[0];
  if (first === undefined) throw new Error("a failed zod parse without issues");
  let report = first;
  for (const issue of error.issues) {
    const outer = report.code !== "unrecognized_keys" || issue.path.length < report.path.length;
    if (issue.code === "unrecognized_keys" && within(issue.path, first.path) && outer) report = issue;
  }
  return report;
}

/** A plain object (not null, not an array): what a mapping in YAML or JSON parses to. */
export const jsonObject = z.record(z.string(), z.unknown());

/** `schema`, reading an absent or null value as an empty mapping (so every key gets its default). */
export function orEmpty<T>(schema: z.ZodType<T>): z.ZodType<T> {
  return z.preprocess((v) => v ?? {}, schema);
}

/** `schema`, or `fallback` (a copy: no two results share an array) when the value is absent or null. */
export function orDefault<T>(schema: z.ZodType<T>, fallback: NoInfer<T>): z.ZodType<T> {
  return schema.nullish().transform((v) => v ?? structuredClone(fallback));
}

interface Voice<T> {
  /** An error parameter stating T for the failing value (`input`) at `path` from the parse root. */
  says(make: (input: unknown, path: readonly PropertyKey[]) => T): ErrorParam;
  /** A message stating T, for issues raised by hand (superRefine). */
  text(parts: T): string;
  /** What an issue states; `fallback` words an issue no schema gave a message to. */
  heard(issue: Issue): T;
}

/** A Voice whose parts `shape` describes; `fallback` covers zod's own wording (a schema left without one). */
export function voice<T>(shape: z.ZodType<T>, fallback: (issue: Issue) => T): Voice<T> {
  const text = (parts: T): string => JSON.stringify(parts);
  return {
    says: (make) => ({ error: (iss) => text(make(iss.input, iss.path ?? [])) }),
    text,
    heard: (issue) => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(issue.message);
      } catch {
        return fallback(issue);
      }
      const parts = shape.safeParse(parsed);
      return parts.success ? parts.data : fallback(issue);
    },
  };
}

/**
 * `schema`, except that any mismatch inside a value is one issue about the whole value: for messages
 * that quote the whole list or mapping ("expected label: value pairs, got {...}").
 */
export function asOne<T>(schema: z.ZodType<T>, param: ErrorParam): z.ZodType<T> {
  return z
    .unknown()
    .refine((v) => schema.safeParse(v).success, param)
    .pipe(schema);
}

/** How nkitd.yaml and service definitions word a bad value: the problem (quoting the value) and the fix. */
export interface Complaint {
  problem: string;
  fix: string;
}

export const complaint: Voice<Complaint> = voice(
  z.object({ problem: z.string(), fix: z.string() }),
  (issue) => ({
    problem: issue.message,
    fix: "see the reference of this key",
  }),
);

/** An error parameter: `problem` quotes the bad value, `fix` says what to write instead. */
export function complain(problem: (input: unknown) => string, fix: string): ErrorParam {
  return complaint.says((input) => ({ problem: problem(input), fix }));
}
