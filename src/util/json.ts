// The one way to quote a bad value of untyped input (YAML config, service files, CNI netconf, state
// files) in an error message.

/** A value as an error message quotes it. */
export const show = (v: unknown): string => JSON.stringify(v) ?? String(v);
