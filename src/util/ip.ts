// IP addresses and prefixes as values. Text becomes an IpAddress or an IpPrefix where it comes in
// (configuration, CNI, the API, state files, netlink and BPF map reads), and everything after that
// takes what it needs from the one value: IPAM its integer, netlink and the BPF maps its bytes, the
// records and messages its canonical text (IPv4 dotted quad, IPv6 RFC 5952), so an address nkit
// writes reads the same in state files, API answers and logs whatever spelling came in. Validation
// goes through node:net so both families accept exactly what Node accepts. MAC text and host:port
// text live here too: they are the other address forms every layer shares.
import { isIPv4, isIPv6 } from "node:net";
import { InvalidArgumentError } from "../errors.js";

export type IpFamily = 4 | 6;

/** Text that is not the address or prefix it should be (an invalid argument wherever it came in). */
export class AddressError extends InvalidArgumentError {}

const BITS: Record<IpFamily, 32 | 128> = { 4: 32, 6: 128 };

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

/** The canonical text of 4 or 16 address bytes; IPv6 lowercase with the longest zero run as "::". */
function canonicalText(b: Buffer): string {
  if (b.length === 4) return Array.from(b).join(".");
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

/**
 * One IPv4 or IPv6 address. Immutable: its bytes are never handed out (toBytes copies), so a value
 * can be shared by every owner that holds it; the canonical text is computed once, the integer on
 * first use. JSON.stringify writes the text, so a value logged or serialized reads as an address.
 */
export class IpAddress {
  /** The canonical text ("10.47.0.5", "fd47::5"). */
  readonly text: string;
  readonly #bytes: Buffer;
  #value: bigint | undefined;

  private constructor(
    readonly family: IpFamily,
    bytes: Buffer,
  ) {
    this.#bytes = bytes;
    this.text = canonicalText(bytes);
    Object.freeze(this);
  }

  /** A plain address (no prefix length, no zone); `what` names it in the error. */
  static parse(text: string, what = "address"): IpAddress {
    const ip = IpAddress.tryParse(text);
    if (!ip) throw new AddressError(`${what} ${JSON.stringify(text)} is not an IPv4 or IPv6 address`);
    return ip;
  }

  /** For text that may be anything (another plugin's CNI result, a state file edited by hand). */
  static tryParse(text: string): IpAddress | undefined {
    if (isIPv4(text)) return new IpAddress(4, v4Bytes(text));
    if (isIPv6(text) && !text.includes("%")) return new IpAddress(6, v6Bytes(text));
    return undefined;
  }

  /** 4 or 16 bytes in network order, as netlink attributes and BPF map fields hold them. */
  static fromBytes(bytes: Uint8Array): IpAddress {
    if (bytes.length === 4) return new IpAddress(4, Buffer.from(bytes));
    if (bytes.length === 16) return new IpAddress(6, Buffer.from(bytes));
    throw new AddressError(`${bytes.length} bytes are not an IPv4 or IPv6 address`);
  }

  /** The address whose integer is `value` (prefix arithmetic: IPAM's pools). */
  static fromValue(family: IpFamily, value: bigint): IpAddress {
    const bits = BITS[family];
    if (value < 0n || value >> BigInt(bits) !== 0n) {
      throw new AddressError(`${value} is not an IPv${family} address value`);
    }
    return new IpAddress(family, Buffer.from(value.toString(16).padStart(bits / 4, "0"), "hex"));
  }

  /** 32 or 128. */
  get bits(): 32 | 128 {
    return BITS[this.family];
  }

  /** The address as an unsigned integer, most significant byte first. */
  get value(): bigint {
    this.#value ??= BigInt(`0x${this.#bytes.toString("hex")}`);
    return this.#value;
  }

  /** 0.0.0.0 or "::": in a host port, "every address". */
  get isUnspecified(): boolean {
    return this.#bytes.every((b) => b === 0);
  }

  /** A fresh copy of the 4 or 16 bytes, network order. */
  toBytes(): Buffer {
    return Buffer.from(this.#bytes);
  }

  equals(other: IpAddress): boolean {
    return this.family === other.family && this.#bytes.equals(other.#bytes);
  }

  toString(): string {
    return this.text;
  }

  toJSON(): string {
    return this.text;
  }
}

/**
 * The one prefix parser. CIDRs and netlink's interface addresses differ only in whether a bare
 * address is allowed (`loose`: it means the full width) and in how errors name the text: a CIDR's
 * errors stand alone because the config prefixes them with the key, netlink's say `what` it was.
 */
function parsePrefixText(
  text: string,
  loose: boolean,
  what: string,
): { address: IpAddress; prefixLength: number } {
  const slash = text.indexOf("/");
  if (slash < 0 && !loose) {
    throw new AddressError(`"${text}" is not a CIDR: expected address/prefix-length`);
  }
  const address = IpAddress.parse(slash < 0 ? text : text.slice(0, slash), what);
  if (slash < 0) return { address, prefixLength: address.bits };
  const lenText = text.slice(slash + 1);
  const prefixLength = /^\d{1,3}$/.test(lenText) ? Number(lenText) : Number.NaN;
  if (!(prefixLength <= address.bits)) {
    throw new AddressError(`${loose ? `${what} ` : ""}"${text}": prefix length must be 0..${address.bits}`);
  }
  return { address, prefixLength };
}

/**
 * An address with a prefix length. A network (IPAM's pools, the service and non-masquerade CIDRs,
 * every LPM trie key) has its host bits zero; an interface address ("10.47.0.5/24") keeps them, and
 * `network` is its subnet. Immutable like IpAddress; JSON.stringify writes the text.
 */
export class IpPrefix {
  /** "10.47.0.0/24": the address's canonical text and the length. */
  readonly text: string;

  private constructor(
    readonly address: IpAddress,
    readonly prefixLength: number,
  ) {
    this.text = `${address.text}/${prefixLength}`;
    Object.freeze(this);
  }

  /**
   * A network as nkit is configured with them ("10.47.0.0/24", "fd47::/64"): the length is required
   * and host bits are refused, with the network that was probably meant in the message.
   */
  static parse(text: string): IpPrefix {
    const { address, prefixLength } = parsePrefixText(text, false, "address");
    const p = new IpPrefix(address, prefixLength);
    if (!p.address.equals(p.network)) {
      throw new AddressError(
        `"${text}" has host bits set: did you mean ${p.network.text}/${p.prefixLength}?`,
      );
    }
    return p;
  }

  /**
   * An address with its subnet's length ("10.47.0.5/24"), a bare address meaning its full width: what
   * netlink takes for interface addresses and route destinations. `what` names it in the error.
   */
  static parseLoose(text: string, what = "prefix"): IpPrefix {
    const { address, prefixLength } = parsePrefixText(text, true, what);
    return new IpPrefix(address, prefixLength);
  }

  static of(address: IpAddress, prefixLength: number): IpPrefix {
    if (!Number.isInteger(prefixLength) || prefixLength < 0 || prefixLength > address.bits) {
      throw new AddressError(`${prefixLength} is not an IPv${address.family} prefix length`);
    }
    return new IpPrefix(address, prefixLength);
  }

  get family(): IpFamily {
    return this.address.family;
  }

  /** The address with the host bits zeroed. */
  get network(): IpAddress {
    const hostBits = BigInt(this.address.bits - this.prefixLength);
    const value = (this.address.value >> hostBits) << hostBits;
    return value === this.address.value ? this.address : IpAddress.fromValue(this.family, value);
  }

  /** Number of addresses in the prefix. */
  get size(): bigint {
    return 1n << BigInt(this.address.bits - this.prefixLength);
  }

  contains(ip: IpAddress): boolean {
    if (ip.family !== this.family) return false;
    const hostBits = BigInt(this.address.bits - this.prefixLength);
    return ip.value >> hostBits === this.address.value >> hostBits;
  }

  /** Whether any address lies in both (one contains the other's network). */
  overlaps(other: IpPrefix): boolean {
    if (other.family !== this.family) return false;
    const [shorter, longer] = this.prefixLength <= other.prefixLength ? [this, other] : [other, this];
    return shorter.contains(longer.address);
  }

  toString(): string {
    return this.text;
  }

  toJSON(): string {
    return this.text;
  }
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
  // join() makes one flat string; a template literal keeps the pieces (these are kept as map keys).
  return (address.includes(":") ? ["[", address, "]:", port] : [address, ":", port]).join("");
}
