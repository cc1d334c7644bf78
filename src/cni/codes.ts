// CNI error codes nkit uses, and the mapping from nkitd's typed errors. Codes 1-11 and 50-51 are the
// CNI spec's well-known codes; 100 and above are nkit's own. These numbers are a stable interface:
// runtimes, operators and tests match on them. native/cni (cni.h, NK_CNI_CODES) emits 1, 4, 5, 6, 7, 11, 50
// and 106 itself (before or instead of reaching nkitd).
//
// | code | meaning                                                                                  |
// |------|------------------------------------------------------------------------------------------|
// | 1    | incompatible CNI version (cniVersion not one of SUPPORTED_VERSIONS)                      |
// | 2    | unsupported field (reserved; nkit currently accepts every field)                         |
// | 3    | container unknown: CHECK for a container nkit has no attachment for                     |
// | 4    | invalid environment variables: CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS |
// | 5    | I/O failure: reading stdin, or the socket (other than timeouts), e.g. permission denied  |
// | 6    | failed to decode content: stdin or the request is not JSON, prevResult malformed          |
// | 7    | invalid network configuration: mode, socket, timeoutMs, name, ips, missing prevResult or  |
// |      | cni.dev/valid-attachments                                                                |
// | 11   | try again later: nkitd unreachable or too slow (ADD, CHECK, GC, and DEL it cannot queue) |
// | 50   | STATUS: nkit cannot serve ADD now (nkitd unreachable or its datapath not ready)          |
// | 100  | internal error in nkitd                                                                   |
// | 101  | IPAM exhausted: no free address in a pod CIDR                                             |
// | 102  | IPAM conflict: requested address taken, outside the pod CIDR or contradicting a reservation |
// | 103  | datapath operation failed (netlink or BPF)                                                 |
// | 104  | CHECK found a difference between the expected and the actual state                        |
// | 105  | attachment conflict: the container is already attached differently (ifName, netns, network) |
// | 106  | protocol error between nkit-cni and nkitd                                                  |
// | 107  | the network namespace (CNI_NETNS) cannot be used                                           |
// | 108  | not supported on this host (a kernel feature is missing)                                   |
import { NkitError } from "../errors.js";

export const CniCode = {
  INCOMPATIBLE_VERSION: 1,
  UNSUPPORTED_FIELD: 2,
  UNKNOWN_CONTAINER: 3,
  INVALID_ENV: 4,
  IO: 5,
  DECODE: 6,
  INVALID_CONFIG: 7,
  TRY_AGAIN: 11,
  STATUS_UNAVAILABLE: 50,
  STATUS_DEGRADED: 51,
  INTERNAL: 100,
  IPAM_EXHAUSTED: 101,
  IPAM_CONFLICT: 102,
  DATAPATH: 103,
  CHECK_MISMATCH: 104,
  ATTACHMENT_CONFLICT: 105,
  PROTOCOL: 106,
  NETNS: 107,
  NOT_SUPPORTED: 108,
} as const;

export type CniCodeValue = (typeof CniCode)[keyof typeof CniCode];

/** The CNI error object printed on stdout (spec: "Error" section). */
interface CniErrorJson {
  cniVersion: string;
  code: number;
  msg: string;
  details: string;
}

/** An error with its CNI code; `msg` is the one-line summary, `details` says more or what to do. */
export class CniError extends NkitError {
  /** The CNI error code the shim prints (the `code` of the CNI error object). */
  readonly cniCode: CniCodeValue;
  readonly details: string;
  constructor(cniCode: CniCodeValue, msg: string, details = "", options?: { cause?: unknown }) {
    super("NKIT_CNI", msg, options);
    this.cniCode = cniCode;
    this.details = details;
  }
}

const FROM_NKIT: Partial<Record<NkitError["code"], CniCodeValue>> = {
  NKIT_IPAM_EXHAUSTED: CniCode.IPAM_EXHAUSTED,
  NKIT_IPAM_CONFLICT: CniCode.IPAM_CONFLICT,
  NKIT_NETLINK: CniCode.DATAPATH,
  NKIT_BPF: CniCode.DATAPATH,
  NKIT_BPF_LOAD: CniCode.DATAPATH,
  NKIT_NETNS: CniCode.NETNS,
  NKIT_ALREADY_EXISTS: CniCode.ATTACHMENT_CONFLICT,
  NKIT_NOT_SUPPORTED: CniCode.NOT_SUPPORTED,
  NKIT_INVALID_ARGUMENT: CniCode.INVALID_CONFIG,
};

/** Any error as a CniError: typed nkitd errors keep their meaning, everything else is internal. */
export function toCniError(e: unknown): CniError {
  if (e instanceof CniError) return e;
  if (e instanceof NkitError) {
    return new CniError(FROM_NKIT[e.code] ?? CniCode.INTERNAL, e.message, e.code, { cause: e });
  }
  const message = e instanceof Error ? e.message : String(e);
  return new CniError(CniCode.INTERNAL, `internal error in nkitd: ${message}`, "see nkitd's log", {
    cause: e,
  });
}

export function errorJson(e: CniError, cniVersion: string): CniErrorJson {
  return { cniVersion, code: e.cniCode, msg: e.message, details: e.details };
}
