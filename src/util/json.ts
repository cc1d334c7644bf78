// Reading untyped input (YAML config, service files, CNI netconf, state files): the one "is this a
// plain object" check and the one way to quote a bad value in an error message.

export type JsonObject = Record<string, unknown>;

/** A plain object (not null, not an array): what a mapping in YAML or JSON parses to. */
export const isObj = (v: unknown): v is JsonObject =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** A value as an error message quotes it. */
export const show = (v: unknown): string => JSON.stringify(v) ?? String(v);
