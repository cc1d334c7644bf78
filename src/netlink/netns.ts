// Network namespace helpers over the addon: identity, fds for IFLA_NET_NS_FD, and the few per-netns
// operations (interface lookup, sysctls) that must run on a thread inside the namespace.
import { InvalidArgumentError, isNativeErrnoError, NotFoundError } from "../errors.js";
import { netnsAddon } from "../native/netns.js";
import { netnsFailure } from "./failures.js";

/** Inode of the namespace behind path; two paths with equal inodes name the same netns. */
export function netnsInode(path: string): number {
  try {
    return netnsAddon().netnsInode(path);
  } catch (e) {
    throw netnsFailure(path, e);
  }
}

/** Whether path still names a network namespace (a pod's, whose owner has not deleted it). */
export function netnsExists(path: string): boolean {
  try {
    netnsInode(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Whether two paths name the same network namespace: the one check every owner uses to compare a
 * recorded netns path with a requested one. A path that cannot be inspected (its namespace gone, a
 * bind mount removed) names none, so a stale record compares unequal instead of failing the caller.
 */
export function sameNetns(a: string, b: string): boolean {
  if (a === b) return true;
  try {
    return netnsInode(a) === netnsInode(b);
  } catch {
    return false;
  }
}

/** Runs fn with an open, validated fd of the netns at path, closing it afterwards. */
async function withNetnsFd<T>(path: string, fn: (fd: number) => Promise<T>): Promise<T> {
  let fd: number;
  try {
    fd = netnsAddon().netnsOpen(path);
  } catch (e) {
    throw netnsFailure(path, e);
  }
  try {
    return await fn(fd);
  } finally {
    netnsAddon().netnsClose(fd);
  }
}

/** Like withNetnsFd, but passes undefined (and opens nothing) when path is undefined. */
export function withOptionalNetnsFd<T>(
  path: string | undefined,
  fn: (fd: number | undefined) => Promise<T>,
): Promise<T> {
  return path === undefined ? fn(undefined) : withNetnsFd(path, fn);
}

/** Maps an in-netns operation's failure: a bad namespace path becomes NetnsError, a missing object
 * NotFoundError, anything else stays as the addon reported it. */
function opFailure(
  e: unknown,
  netnsPath: string | undefined,
  absent: string,
  notFound: () => string,
): unknown {
  if (!isNativeErrnoError(e)) return e;
  if (netnsPath && e.syscall === "open netns") return netnsFailure(netnsPath, e);
  if (e.code === absent) return new NotFoundError(notFound(), { cause: e });
  return e;
}

const inNs = (netnsPath: string | undefined): string => (netnsPath ? ` in ${netnsPath}` : "");

/** Interface index of `name` inside the netns at path (our own when undefined). */
export async function ifNameToIndex(name: string, netnsPath?: string): Promise<number> {
  try {
    return await netnsAddon().netnsIfNameToIndex(netnsPath ?? null, name);
  } catch (e) {
    throw opFailure(e, netnsPath, "ENODEV", () => `no interface named ${name}${inNs(netnsPath)}`);
  }
}

function sysctlPath(key: string): string {
  // Accept both "net.ipv4.ip_forward" and "net/ipv4/ip_forward"; dotted keys cannot name interfaces
  // with dots in them, so slashes win whenever present.
  const path = key.includes("/") ? key : key.replaceAll(".", "/");
  if (!path.startsWith("net/")) {
    throw new InvalidArgumentError(`sysctl ${key}: only per-netns keys under net/ can be set this way`);
  }
  return path;
}

/** Writes a net.* sysctl as seen from inside the netns at path (our own when undefined). */
export async function sysctlWrite(key: string, value: string | number, netnsPath?: string): Promise<void> {
  const path = sysctlPath(key);
  try {
    await netnsAddon().netnsSysctlWrite(netnsPath ?? null, path, String(value));
  } catch (e) {
    throw opFailure(e, netnsPath, "ENOENT", () => `sysctl ${key} does not exist${inNs(netnsPath)}`);
  }
}

/** Reads a net.* sysctl as seen from inside the netns at path (trailing newline removed). */
export async function sysctlRead(key: string, netnsPath?: string): Promise<string> {
  const path = sysctlPath(key);
  try {
    return (await netnsAddon().netnsSysctlRead(netnsPath ?? null, path)).trim();
  } catch (e) {
    throw opFailure(e, netnsPath, "ENOENT", () => `sysctl ${key} does not exist${inNs(netnsPath)}`);
  }
}
