// Maps the addon's errno-carrying errors onto nkit's error classes, with messages that say what was
// being done and what to try next.
import {
  AlreadyExistsError,
  BpfError,
  BpfLoadError,
  isNativeErrnoError,
  type NkitError,
  NotFoundError,
} from "../errors.js";

const PERMISSION_HINT =
  "needs root (or CAP_BPF + CAP_NET_ADMIN) and an unlimited RLIMIT_MEMLOCK on kernels before 5.11";

/** Converts a failure of a native BPF call made while doing `what`. */
export function toBpfError(e: unknown, what: string): NkitError | Error {
  if (!isNativeErrnoError(e)) return e instanceof Error ? e : new Error(String(e));
  const opts = { cause: e };
  switch (e.code) {
    case "ENOENT":
      return new NotFoundError(`${what}: not found (${e.message})`, opts);
    case "EEXIST":
      return new AlreadyExistsError(`${what}: already exists (${e.message})`, opts);
    case "EPERM":
    case "EACCES":
      return new BpfError(`${what}: permission denied: ${PERMISSION_HINT} (${e.message})`, e.code, opts);
    case "ESTALE":
      return new BpfError(
        `${what}: the expected revision does not match the attach point's current revision (another ` +
          `attach or detach happened in between); query the attach point again and retry (${e.message})`,
        e.code,
        opts,
      );
    case "EBADF":
      return new BpfError(`${what}: the handle is closed (${e.message})`, e.code, opts);
    default:
      return new BpfError(`${what}: ${e.message}`, e.code, opts);
  }
}

/** Runs a native call, converting its failure. */
export function nativeCall<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw toBpfError(e, what);
  }
}

function nativeLog(e: unknown): string {
  if (typeof e === "object" && e !== null && "log" in e && typeof e.log === "string") return e.log.trimEnd();
  return "";
}

/** The line of libbpf's output that best states why an open/load failed. */
function reasonFromLog(log: string): string | undefined {
  const lines = log.split("\n").map((l) => l.trim());
  // The verifier's verdict is the last line before libbpf's end marker that is not statistics.
  const end = lines.indexOf("-- END PROG LOAD LOG --");
  if (end > 0) {
    for (let i = end - 1; i >= 0; i--) {
      const l = lines[i] ?? "";
      if (l && !l.startsWith("processed ") && !l.startsWith("verification time")) {
        const prog = /prog '([^']+)'/.exec(log)?.[1];
        return `the verifier rejected program '${prog ?? "?"}': ${l}`;
      }
    }
  }
  return lines.find((l) => l.startsWith("libbpf:"))?.replace(/^libbpf:\s*/, "");
}

/** Converts a failure of objOpen/objLoad into a BpfLoadError carrying libbpf's and the verifier's log. */
export function toLoadError(e: unknown, path: string): Error {
  if (!isNativeErrnoError(e)) return e instanceof Error ? e : new Error(String(e));
  const log = nativeLog(e);
  const reason = reasonFromLog(log);
  let message = reason ? `${e.message}: ${reason}` : e.message;
  if (e.code === "EPERM") message += `: ${PERMISSION_HINT}`;
  return new BpfLoadError(path, message, log, { cause: e });
}
