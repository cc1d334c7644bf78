// IPv4/IPv6 prefixes as bigint ranges. Pure logic, shared by IPAM, routes and (later) the
// service and masquerade configuration.
import { isIPv4, isIPv6 } from "node:net";
import { InvalidArgumentError } from "../errors.js";

export type Family = 4 | 6;

export interface Cidr {
  readonly family: Family;
  /** Network address (host bits zero). */
  readonly network: bigint;
  readonly prefixLen: number;
  /** Canonical text, e.g. "10.47.0.0/24" or "fd47::/64". */
  readonly text: string;
}

const BITS: Record<Family, number> = { 4: 32, 6: 128 };

export function parseIp(text: string): { family: Family; value: bigint } {
  if (isIPv4(text)) {
    const value = text.split(".").reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
    return { family: 4, value };
  }
  if (isIPv6(text)) return { family: 6, value: parseIpv6(text) };
  throw new InvalidArgumentError(`"${text}" is not an IPv4 or IPv6 address`);
}

function parseIpv6(text: string): bigint {
  let s = text;
  // An embedded dotted quad ("::ffff:1.2.3.4") becomes two hextets.
  const lastColon = s.lastIndexOf(":");
  const tail = s.slice(lastColon + 1);
  if (tail.includes(".")) {
    const v4 = parseIp(tail).value;
    s = `${s.slice(0, lastColon + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head = "", rest] = s.split("::", 2) as [string, string | undefined];
  const headParts = head ? head.split(":") : [];
  const restParts = rest ? rest.split(":") : [];
  const fill = rest === undefined ? 0 : 8 - headParts.length - restParts.length;
  const parts = [...headParts, ...Array<string>(fill).fill("0"), ...restParts];
  return parts.reduce((acc, p) => (acc << 16n) | BigInt(Number.parseInt(p, 16)), 0n);
}

export function formatIp(family: Family, value: bigint): string {
  if (family === 4) {
    return [24n, 16n, 8n, 0n].map((s) => ((value >> s) & 0xffn).toString()).join(".");
  }
  const hextets: number[] = [];
  for (let i = 7; i >= 0; i--) hextets.push(Number((value >> BigInt(i * 16)) & 0xffffn));
  // RFC 5952: compress the longest run (length >= 2) of zero hextets, the first one on ties.
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (hextets[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && hextets[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = hextets.map((h) => h.toString(16));
  if (bestStart < 0) return hex.join(":");
  const left = hex.slice(0, bestStart).join(":");
  const right = hex.slice(bestStart + bestLen).join(":");
  return `${left}::${right}`;
}

export function parseCidr(text: string): Cidr {
  const slash = text.indexOf("/");
  if (slash < 0) throw new InvalidArgumentError(`"${text}" is not a CIDR: expected address/prefix-length`);
  const { family, value } = parseIp(text.slice(0, slash));
  const lenText = text.slice(slash + 1);
  const prefixLen = Number(lenText);
  if (!/^\d+$/.test(lenText) || prefixLen > BITS[family]) {
    throw new InvalidArgumentError(`"${text}": prefix length must be 0..${BITS[family]}`);
  }
  const hostBits = BigInt(BITS[family] - prefixLen);
  const network = (value >> hostBits) << hostBits;
  if (network !== value) {
    throw new InvalidArgumentError(
      `"${text}" has host bits set: did you mean ${formatIp(family, network)}/${prefixLen}?`,
    );
  }
  return { family, network, prefixLen, text: `${formatIp(family, network)}/${prefixLen}` };
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
