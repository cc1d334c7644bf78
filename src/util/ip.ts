// IPv4/IPv6 and MAC address parsing and formatting between text and network-order bytes, for
// every module that needs it (netlink messages, BPF map keys, IPAM). Validation goes through
// node:net so both families accept exactly what Node accepts.
import { isIPv4, isIPv6 } from "node:net";
import { InvalidArgumentError } from "../errors.js";

export type IpFamily = 4 | 6;

export interface ParsedIp {
  family: IpFamily;
  bytes: Buffer;
}

function v4Bytes(s: string): Buffer {
  return Buffer.from(s.split(".").map((p) => Number.parseInt(p, 10)));
}

function v6Bytes(s: string): Buffer {
  let text = s;
  // An embedded dotted quad (::ffff:10.0.0.1) is rewritten as its two hex groups first.
  const lastColon = text.lastIndexOf(":");
  if (text.includes(".", lastColon)) {
    const q = v4Bytes(text.slice(lastColon + 1));
    text = `${text.slice(0, lastColon + 1)}${((q[0]! << 8) | q[1]!).toString(16)}:${((q[2]! << 8) | q[3]!).toString(16)}`;
  }
  const groupsOf = (part: string): number[] =>
    part === "" ? [] : part.split(":").map((g) => Number.parseInt(g, 16));
  const cut = text.indexOf("::");
  const front = groupsOf(cut < 0 ? text : text.slice(0, cut));
  const back = cut < 0 ? [] : groupsOf(text.slice(cut + 2));
  const zeros = new Array<number>(8 - front.length - back.length).fill(0);
  const b = Buffer.alloc(16);
  [...front, ...zeros, ...back].forEach((g, i) => {
    b.writeUInt16BE(g, i * 2);
  });
  return b;
}

/** Parses a plain IP address (no prefix, no zone). */
export function parseIp(s: string, what = "address"): ParsedIp {
  if (isIPv4(s)) return { family: 4, bytes: v4Bytes(s) };
  if (isIPv6(s) && !s.includes("%")) return { family: 6, bytes: v6Bytes(s) };
  throw new InvalidArgumentError(`${what} ${JSON.stringify(s)} is not an IPv4 or IPv6 address`);
}

export interface ParsedPrefix extends ParsedIp {
  prefixLength: number;
}

/** Parses "addr/len" (len defaults to the full width when omitted). */
export function parsePrefix(s: string, what = "prefix"): ParsedPrefix {
  const slash = s.indexOf("/");
  const ip = parseIp(slash < 0 ? s : s.slice(0, slash), what);
  const max = ip.family === 4 ? 32 : 128;
  if (slash < 0) return { ...ip, prefixLength: max };
  const lenText = s.slice(slash + 1);
  const len = /^\d{1,3}$/.test(lenText) ? Number(lenText) : Number.NaN;
  if (!(len >= 0 && len <= max)) {
    throw new InvalidArgumentError(`${what} ${JSON.stringify(s)}: prefix length must be 0..${max}`);
  }
  return { ...ip, prefixLength: len };
}

/** Formats 4 or 16 address bytes; IPv6 in RFC 5952 form (lowercase, longest zero run as "::"). */
export function formatIp(b: Uint8Array): string {
  if (b.length === 4) return Array.from(b).join(".");
  if (b.length !== 16) throw new InvalidArgumentError(`cannot format a ${b.length}-byte address`);
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((b[i]! << 8) | b[i + 1]!);
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestLen < 2) return hex.join(":");
  return `${hex.slice(0, bestStart).join(":")}::${hex.slice(bestStart + bestLen).join(":")}`;
}

/** The address in its one canonical text form (IPv4 dotted quad, IPv6 RFC 5952). */
export function canonicalIp(s: string, what = "address"): string {
  return formatIp(parseIp(s, what).bytes);
}

const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

export function parseMac(s: string, what = "MAC address"): Buffer {
  if (!MAC_RE.test(s))
    throw new InvalidArgumentError(`${what} ${JSON.stringify(s)} is not of the form aa:bb:cc:dd:ee:ff`);
  return Buffer.from(s.replaceAll(":", ""), "hex");
}

export function formatMac(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(":");
}

/** "10.0.0.5:8080" or "[fd00::5]:8080". */
export function formatHostPort(address: string, port: number): string {
  return `${address.includes(":") ? `[${address}]` : address}:${port}`;
}
