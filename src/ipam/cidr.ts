// IPv4/IPv6 prefixes as bigint ranges. Pure logic, shared by IPAM, routes and (later) the
// service and masquerade configuration.
import { InvalidArgumentError } from "../errors.js";
import { formatIp, type IpFamily, parseIp } from "../util/ip.js";

export type Family = IpFamily;

export interface Cidr {
  readonly family: Family;
  /** Network address (host bits zero). */
  readonly network: bigint;
  readonly prefixLen: number;
  /** Canonical text, e.g. "10.47.0.0/24" or "fd47::/64". */
  readonly text: string;
}

const BITS: Record<Family, number> = { 4: 32, 6: 128 };

/** Address text to (family, integer value), for prefix arithmetic; text parsing is src/util/ip.ts's. */
export function ipValue(text: string): { family: Family; value: bigint } {
  const { family, bytes } = parseIp(text);
  return { family, value: BigInt(`0x${bytes.toString("hex")}`) };
}

/** The canonical text of an integer address value. */
export function ipValueText(family: Family, value: bigint): string {
  const hex = value.toString(16).padStart(family === 4 ? 8 : 32, "0");
  return formatIp(Buffer.from(hex, "hex"));
}

export function parseCidr(text: string): Cidr {
  const slash = text.indexOf("/");
  if (slash < 0) throw new InvalidArgumentError(`"${text}" is not a CIDR: expected address/prefix-length`);
  const { family, value } = ipValue(text.slice(0, slash));
  const lenText = text.slice(slash + 1);
  const prefixLen = Number(lenText);
  if (!/^\d+$/.test(lenText) || prefixLen > BITS[family]) {
    throw new InvalidArgumentError(`"${text}": prefix length must be 0..${BITS[family]}`);
  }
  const hostBits = BigInt(BITS[family] - prefixLen);
  const network = (value >> hostBits) << hostBits;
  if (network !== value) {
    throw new InvalidArgumentError(
      `"${text}" has host bits set: did you mean ${ipValueText(family, network)}/${prefixLen}?`,
    );
  }
  return { family, network, prefixLen, text: `${ipValueText(family, network)}/${prefixLen}` };
}

/** Number of addresses in the prefix. */
export function cidrSize(c: Cidr): bigint {
  return 1n << BigInt(BITS[c.family] - c.prefixLen);
}

export function cidrContains(c: Cidr, family: Family, value: bigint): boolean {
  if (family !== c.family) return false;
  const hostBits = BigInt(BITS[c.family] - c.prefixLen);
  return value >> hostBits === c.network >> hostBits;
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false;
  const shorter = a.prefixLen <= b.prefixLen ? a : b;
  const longer = shorter === a ? b : a;
  return cidrContains(shorter, longer.family, longer.network);
}
