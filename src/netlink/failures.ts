// Turns kernel and addon failures into nkit's error classes with messages that say what to do.
import { AlreadyExistsError, isNativeErrnoError, NetlinkError, NetnsError } from "../errors.js";
import { errnoName } from "../util/errno.js";
import { NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE } from "./constants.js";
import type { NlRequest, RtnlSocket } from "./socket.js";

export function netlinkError(operation: string, errno: number, extack: string | undefined): NetlinkError {
  return new NetlinkError(operation, errno, errnoName(errno), extack);
}

/** Maps a failure to reach a netns (bad path, not a netns, no permission) to NetnsError. */
export function netnsFailure(path: string, e: unknown): Error {
  if (!isNativeErrnoError(e)) return e instanceof Error ? e : new Error(String(e));
  switch (e.code) {
    case "ENOENT":
      return new NetnsError(path, "does not exist (was the namespace deleted, or never created?)", {
        cause: e,
      });
    case "EINVAL":
      return new NetnsError(
        path,
        "is not a network namespace (expected an nsfs mount such as /run/netns/NAME or /proc/PID/ns/net)",
        { cause: e },
      );
    case "EPERM":
    case "EACCES":
      return new NetnsError(path, "permission denied: entering a netns needs CAP_SYS_ADMIN (run as root)", {
        cause: e,
      });
    default:
      return new NetnsError(path, e.message, { cause: e });
  }
}

/** Maps a transport failure (timeout, closed socket, overflow) of one operation to NetlinkError. */
export function transportFailure(operation: string, e: unknown): Error {
  if (!isNativeErrnoError(e)) return e instanceof Error ? e : new Error(String(e));
  return new NetlinkError(operation, e.errno, e.code, e.message, { cause: e });
}

/** EEXIST from a create request: the object is there already. */
export function alreadyExists(e: unknown, hint: string): unknown {
  if (e instanceof NetlinkError && e.errnoCode === "EEXIST") {
    const kernel = e.extack ? ` (kernel: ${e.extack})` : "";
    return new AlreadyExistsError(`${e.operation}: EEXIST${kernel}: ${hint}`, { cause: e });
  }
  return e;
}

/** True when a delete/get failed only because the object does not exist. */
export function isAbsent(e: unknown, ...codes: string[]): boolean {
  return e instanceof NetlinkError && codes.includes(e.errnoCode);
}

/**
 * Sends the request that adds object `what` ("address 10.0.0.1/24 on eth0"); with replace, one that
 * is there already is updated, otherwise that fails with AlreadyExistsError saying `hint`.
 */
export async function create(
  sock: RtnlSocket,
  type: number,
  body: readonly Uint8Array[],
  what: string,
  replace: boolean,
  hint: string,
): Promise<void> {
  await sock.send(createRequest(type, body, what, replace, hint));
}

/** The request create() sends, for batches. */
export function createRequest(
  type: number,
  body: readonly Uint8Array[],
  what: string,
  replace: boolean,
  hint: string,
): NlRequest {
  return {
    type,
    flags: NLM_F_CREATE | (replace ? NLM_F_REPLACE : NLM_F_EXCL),
    body,
    operation: `${replace ? "replace" : "add"} ${what}`,
    fail: (e) => alreadyExists(e, hint),
  };
}

/** Whether a delete request removed its object: false when it failed only because there was none. */
export async function deleted(request: Promise<unknown>, ...absent: string[]): Promise<boolean> {
  try {
    await request;
    return true;
  } catch (e) {
    if (isAbsent(e, ...absent)) return false;
    throw e;
  }
}
