// Reason names as users type them: "DROP_SPOOFED_SOURCE", "drop_spoofed_source" or "spoofed_source".
import { Reason } from "../datapath/reasons.js";
import { InvalidArgumentError } from "../errors.js";

const CODES = new Map<string, number>(Object.entries(Reason));

export function reasonCodeOf(name: string): number {
  const n = name.toUpperCase().replace(/-/g, "_");
  const code = CODES.get(n) ?? CODES.get(`DROP_${n}`);
  if (code === undefined) {
    throw new InvalidArgumentError(
      `unknown reason "${name}"; known reasons: ${[...CODES.keys()].join(", ")}`,
    );
  }
  return code;
}

export function canonicalReason(name: string): string {
  const code = reasonCodeOf(name);
  return [...CODES.entries()].find(([, c]) => c === code)?.[0] ?? name;
}
