// nkit errors <-> gRPC status. The server maps every NkitError code to a gRPC status code and sends
// the nkit code in the "nkit-error-code" trailer and as a "[CODE] " prefix of the details; the
// client turns a failed call back into an ApiError carrying both.
import { Metadata, type ServiceError, status } from "@grpc/grpc-js";
import { NkitError, type NkitErrorCode } from "../errors.js";

const ERROR_CODE_KEY = "nkit-error-code";

const GRPC_OF: Record<NkitErrorCode, status> = {
  NKIT_NOT_SUPPORTED: status.FAILED_PRECONDITION,
  NKIT_INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  NKIT_NOT_FOUND: status.NOT_FOUND,
  NKIT_ALREADY_EXISTS: status.ALREADY_EXISTS,
  NKIT_NETLINK: status.INTERNAL,
  NKIT_NETNS: status.FAILED_PRECONDITION,
  NKIT_BPF_LOAD: status.INTERNAL,
  NKIT_BPF: status.INTERNAL,
  NKIT_NATIVE_MISSING: status.FAILED_PRECONDITION,
  NKIT_IPAM_EXHAUSTED: status.RESOURCE_EXHAUSTED,
  NKIT_IPAM_CONFLICT: status.ALREADY_EXISTS,
  NKIT_STATE_CORRUPT: status.DATA_LOSS,
  NKIT_INTERNAL: status.INTERNAL,
  NKIT_CONFIG: status.INVALID_ARGUMENT,
  NKIT_TTRPC: status.UNAVAILABLE,
  NKIT_PROTOCOL: status.INTERNAL,
  NKIT_NRI: status.UNAVAILABLE,
  NKIT_CONTAINERD: status.UNAVAILABLE,
  NKIT_NOMAD: status.UNAVAILABLE,
  NKIT_CLOSED: status.UNAVAILABLE,
  // Client-side failures; a server never sends them, but every code has a status.
  NKIT_API: status.UNKNOWN,
  NKIT_CLI: status.INVALID_ARGUMENT,
  // Raised and answered on the CNI endpoint only, as CNI error JSON.
  NKIT_CNI: status.FAILED_PRECONDITION,
};

function grpcStatusOf(code: NkitErrorCode): status {
  return GRPC_OF[code] ?? status.INTERNAL;
}

/** Server side: any thrown value as a gRPC error with the nkit code attached. */
export function toServiceError(e: unknown): { code: status; details: string; metadata: Metadata } {
  const code: NkitErrorCode = e instanceof NkitError ? e.code : "NKIT_INTERNAL";
  const message = e instanceof Error ? e.message : String(e);
  const metadata = new Metadata();
  metadata.set(ERROR_CODE_KEY, code);
  return { code: grpcStatusOf(code), details: `[${code}] ${message}`, metadata };
}

/** Client side: a failed API call. `unreachable` when no nkitd answered on the socket. */
export class ApiError extends NkitError {
  readonly grpcCode: status;
  /** The code nkitd sent (NKIT_UNREACHABLE when none answered). */
  readonly nkitCode: string;
  readonly unreachable: boolean;
  constructor(grpcCode: status, nkitCode: string, message: string, unreachable: boolean) {
    super("NKIT_API", message);
    this.grpcCode = grpcCode;
    this.nkitCode = nkitCode;
    this.unreachable = unreachable;
  }
}

function isServiceError(e: unknown): e is ServiceError {
  return e instanceof Error && typeof (e as Partial<ServiceError>).code === "number";
}

export function fromServiceError(e: unknown, socket: string): ApiError {
  if (!isServiceError(e)) return new ApiError(status.UNKNOWN, "NKIT_INTERNAL", String(e), false);
  const fromMeta = e.metadata?.get(ERROR_CODE_KEY)[0];
  const m = /^\[(NKIT_[A-Z_]+)\] ([\s\S]*)$/.exec(e.details ?? "");
  const nkitCode = typeof fromMeta === "string" ? fromMeta : (m?.[1] ?? "");
  if (!nkitCode && (e.code === status.UNAVAILABLE || e.code === status.DEADLINE_EXCEEDED)) {
    return new ApiError(
      e.code,
      "NKIT_UNREACHABLE",
      `nkitd is not reachable on ${socket} (${e.details || status[e.code]}); is it running? (systemctl status nkitd, or pass --socket)`,
      true,
    );
  }
  return new ApiError(e.code, nkitCode || "NKIT_INTERNAL", m?.[2] ?? e.details ?? e.message, false);
}
