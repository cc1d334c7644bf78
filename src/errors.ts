// One error class per failure kind, each with a stable `code` that callers, logs and the API can
// match on. Messages say what failed and what to do about it.

export type NkitErrorCode =
  | "NKIT_NOT_SUPPORTED"
  | "NKIT_INVALID_ARGUMENT"
  | "NKIT_NOT_FOUND"
  | "NKIT_ALREADY_EXISTS"
  | "NKIT_NETLINK"
  | "NKIT_NETNS"
  | "NKIT_BPF_LOAD"
  | "NKIT_BPF"
  | "NKIT_NATIVE_MISSING"
  | "NKIT_IPAM_EXHAUSTED"
  | "NKIT_IPAM_CONFLICT"
  | "NKIT_STATE_CORRUPT"
  | "NKIT_INTERNAL"
  | "NKIT_CONFIG"
  | "NKIT_TTRPC"
  | "NKIT_PROTOCOL"
  | "NKIT_NRI"
  | "NKIT_CONTAINERD"
  | "NKIT_NOMAD"
  | "NKIT_CLOSED"
  | "NKIT_API"
  | "NKIT_CLI"
  | "NKIT_CNI";

export class NkitError extends Error {
  readonly code: NkitErrorCode;
  constructor(code: NkitErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A kernel or build lacks a feature; `need` names what would provide it. */
export class NotSupportedError extends NkitError {
  readonly feature: string;
  readonly need: string;
  constructor(feature: string, need: string, options?: { cause?: unknown }) {
    super("NKIT_NOT_SUPPORTED", `${feature} is not supported on this host: needs ${need}`, options);
    this.feature = feature;
    this.need = need;
  }
}

export class InvalidArgumentError extends NkitError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("NKIT_INVALID_ARGUMENT", message, options);
  }
}

export class NotFoundError extends NkitError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("NKIT_NOT_FOUND", message, options);
  }
}

export class AlreadyExistsError extends NkitError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("NKIT_ALREADY_EXISTS", message, options);
  }
}

/** A netlink request failed; carries the errno and the kernel's extended-ack text when it sent one. */
export class NetlinkError extends NkitError {
  readonly errno: number;
  readonly errnoCode: string;
  readonly extack: string | undefined;
  readonly operation: string;
  constructor(
    operation: string,
    errno: number,
    errnoCode: string,
    extack: string | undefined,
    options?: { cause?: unknown },
  ) {
    super("NKIT_NETLINK", `${operation}: ${errnoCode}${extack ? `: ${extack}` : ""}`, options);
    this.operation = operation;
    this.errno = errno;
    this.errnoCode = errnoCode;
    this.extack = extack;
  }
}

/** A network namespace path could not be opened or entered. */
export class NetnsError extends NkitError {
  readonly path: string;
  constructor(path: string, message: string, options?: { cause?: unknown }) {
    super("NKIT_NETNS", `network namespace ${path}: ${message}`, options);
    this.path = path;
  }
}

/** Opening or loading a BPF object failed; `log` holds the verifier or libbpf output. */
export class BpfLoadError extends NkitError {
  readonly path: string;
  readonly log: string;
  constructor(path: string, message: string, log: string, options?: { cause?: unknown }) {
    super("NKIT_BPF_LOAD", `loading BPF object ${path}: ${message}${log ? `\n${log}` : ""}`, options);
    this.path = path;
    this.log = log;
  }
}

/** A BPF syscall on a map, program, link or pin failed. */
export class BpfError extends NkitError {
  readonly errnoCode: string | undefined;
  constructor(message: string, errnoCode?: string, options?: { cause?: unknown }) {
    super("NKIT_BPF", message, options);
    this.errnoCode = errnoCode;
  }
}

/** Shape of the errors the native addon throws (see native/src/common.c). */
interface NativeErrnoError extends Error {
  code: string;
  errno: number;
  syscall: string;
}

export function isNativeErrnoError(e: unknown): e is NativeErrnoError {
  return (
    e instanceof Error &&
    typeof (e as Partial<NativeErrnoError>).code === "string" &&
    typeof (e as Partial<NativeErrnoError>).errno === "number"
  );
}

/** No free address left in a pool. */
export class IpamExhaustedError extends NkitError {
  readonly cidr: string;
  readonly inUse: number;
  constructor(cidr: string, inUse: number) {
    super(
      "NKIT_IPAM_EXHAUSTED",
      `no free address in ${cidr}: ${inUse} in use; release endpoints or configure a larger podCIDR`,
    );
    this.cidr = cidr;
    this.inUse = inUse;
  }
}

/** A requested address is taken, outside every pool, or contradicts an existing allocation. */
export class IpamConflictError extends NkitError {
  constructor(message: string) {
    super("NKIT_IPAM_CONFLICT", message);
  }
}

/** A state file exists but cannot be parsed; nkit refuses to guess rather than double-allocate. */
export class StateCorruptError extends NkitError {
  readonly path: string;
  constructor(path: string, detail: string, options?: { cause?: unknown; fix?: string }) {
    super(
      "NKIT_STATE_CORRUPT",
      `state file ${path} is unreadable (${detail}); ${options?.fix ?? "move it aside to start fresh"}`,
      options,
    );
    this.path = path;
  }
}

/** A configuration value is wrong; names the key, the bad value and the fix. */
export class ConfigError extends NkitError {
  readonly key: string;
  constructor(key: string, problem: string, fix: string) {
    super("NKIT_CONFIG", `config key "${key}": ${problem}; ${fix}`);
    this.key = key;
  }
}

/**
 * A ttrpc call ended with a non-OK status (from the peer or locally: deadline, closed connection,
 * oversized message). `status` is the gRPC code number, `statusName` its upper-case name.
 */
export class TtrpcError extends NkitError {
  readonly status: number;
  readonly statusName: string;
  readonly detail: string;
  constructor(status: number, statusName: string, detail: string, options?: { cause?: unknown }) {
    super("NKIT_TTRPC", `ttrpc ${statusName}: ${detail}`, options);
    this.status = status;
    this.statusName = statusName;
    this.detail = detail;
  }
}

/** Bytes on a ttrpc or NRI multiplexer stream violate the wire protocol; the connection is unusable. */
export class ProtocolError extends NkitError {
  readonly layer: string;
  constructor(layer: string, message: string, options?: { cause?: unknown }) {
    super("NKIT_PROTOCOL", `${layer} protocol error: ${message}`, options);
    this.layer = layer;
  }
}

/** The NRI plugin could not connect, register or stay registered with the container runtime. */
export class NriError extends NkitError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("NKIT_NRI", message, options);
  }
}

/** containerd's API failed or was unreachable (not: the container does not exist). */
export class ContainerdError extends NkitError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("NKIT_CONTAINERD", message, options);
  }
}

/** Nomad's HTTP API failed or was unreachable (not: the allocation does not exist). */
export class NomadError extends NkitError {
  /** Nomad could not be reached or answered 5xx (no leader, restarting): worth trying again. */
  readonly retryable: boolean;
  constructor(message: string, options?: { cause?: unknown; retryable?: boolean }) {
    super("NKIT_NOMAD", message, options);
    this.retryable = options?.retryable ?? false;
  }
}

/** An object was used after it was closed (or while it closes): a socket, a stream, a manager. */
export class ClosedError extends NkitError {
  readonly what: string;
  constructor(what: string, options?: { cause?: unknown }) {
    const why = options?.cause instanceof Error ? `: ${options.cause.message}` : "";
    super("NKIT_CLOSED", `${what} is closed${why}`, options);
    this.what = what;
  }
}
