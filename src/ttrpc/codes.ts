// gRPC status codes as ttrpc carries them in Response.status.code (google.rpc.Status).
import { TtrpcError } from "../errors.js";

export const Code = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

type CodeName = keyof typeof Code;

const names = new Map<number, CodeName>(Object.entries(Code).map(([k, v]) => [v, k as CodeName]));

/** Upper-case name of a status code; unknown numbers come back as `CODE_<n>`. */
function codeName(code: number): string {
  return names.get(code) ?? `CODE_${code}`;
}

/** A TtrpcError carrying `code` and `detail`. */
export function statusError(code: number, detail: string, options?: { cause?: unknown }): TtrpcError {
  return new TtrpcError(code, codeName(code), detail, options);
}
