// errno numbers to the names the kernel, iproute2 and the addon (native/src/common.c) use, for every
// layer that reports a raw errno (netlink replies, BPF probes).
import { constants } from "node:os";
import { getSystemErrorName } from "node:util";

/** Kernel-internal ENOTSUPP: leaks out of some BPF paths; libuv has no name for it. */
const ENOTSUPP = 524;
/** libuv names 95 ENOTSUP; the kernel, iproute2 and our addon call it EOPNOTSUPP. */
const EOPNOTSUPP = 95;

/** What libuv does not name (ENOEXEC, EDOM, ...), from os.constants; the first of aliases wins
 * (EDEADLK, not EDEADLOCK), as in the C table. */
const OS_NAMES = new Map<number, string>();
for (const [name, n] of Object.entries(constants.errno)) if (!OS_NAMES.has(n)) OS_NAMES.set(n, name);

/** "EEXIST" for 17 (or -17); "errno N" for values nobody names. */
export function errnoName(errno: number): string {
  const n = Math.abs(errno);
  if (n === EOPNOTSUPP) return "EOPNOTSUPP";
  if (n === ENOTSUPP) return "ENOTSUPP";
  try {
    const name = getSystemErrorName(-n);
    if (!name.startsWith("Unknown")) return name;
  } catch {
    // not a libuv errno: os.constants may still name it
  }
  return OS_NAMES.get(n) ?? `errno ${n}`;
}
