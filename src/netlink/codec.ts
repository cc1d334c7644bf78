// Message codec: netlink framing and attribute TLVs come from node-netlink (`netlink` on npm, used
// purely as a codec: its socket cannot live in another netns). This is the only module that
// touches that library, so its loose types and quirks stop here. The fixed family headers
// (ifinfomsg, ifaddrmsg, rtmsg, ndmsg) are encoded here byte by byte: node-netlink models their flag
// words as objects and their enums as name-or-number unions, which would leak casts everywhere.
//
// Deep imports on purpose: the package index also loads node-netlink's own native socket binding,
// which we never use.

import nlStructs from "netlink/dist/structs.js";
import { ProtocolError } from "../errors.js";
import {
  NLA_F_NESTED,
  NLM_F_ACK_TLVS,
  NLM_F_CAPPED,
  NLMSG_HDRLEN,
  NLMSGERR_ATTR_MSG,
  NLMSGERR_ATTR_OFFS,
} from "./constants.js";

const { formatAttribute, formatMessage, parseAttribute, parseMessages, parseError } = nlStructs;

const align4 = (n: number): number => (n + 3) & ~3;

/** One decoded netlink message. */
export interface NlMessage {
  type: number;
  flags: number;
  seq: number;
  pid: number;
  payload: Buffer;
}

/** Encodes one message padded to 4 bytes, so several can be concatenated into one batch. */
export function encodeMessage(type: number, flags: number, seq: number, body: readonly Uint8Array[]): Buffer {
  const parts = formatMessage({ type, flags, seq, port: 0, data: [...body] });
  const buf = Buffer.concat(parts);
  const padded = align4(buf.length);
  return padded === buf.length ? buf : Buffer.concat([buf, Buffer.alloc(padded - buf.length)]);
}

export function decodeMessages(datagram: Buffer): NlMessage[] {
  return parseMessages(datagram).map((m) => ({
    type: m.type,
    flags: m.flags,
    seq: m.seq,
    pid: m.port,
    payload: m.data,
  }));
}

/** Builds an attribute stream; every attribute is padded to 4 bytes like the kernel expects. */
export class AttrWriter {
  private readonly parts: Uint8Array[] = [];
  private length = 0;

  private add(data: Uint8Array): void {
    this.parts.push(data);
    this.length += data.length;
  }

  private pad(): void {
    const p = align4(this.length) - this.length;
    if (p > 0) this.add(Buffer.alloc(p));
  }

  /** Raw bytes that are not an attribute, e.g. the ifinfomsg that opens a veth/netkit peer block. */
  raw(data: Uint8Array): this {
    this.add(data);
    this.pad();
    return this;
  }

  bytes(type: number, data: Uint8Array, nested = false): this {
    for (const part of formatAttribute({ type, nested, data })) this.add(part);
    this.pad();
    return this;
  }

  u8(type: number, v: number): this {
    return this.bytes(type, Buffer.from([v & 0xff]));
  }

  u16(type: number, v: number): this {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(v);
    return this.bytes(type, b);
  }

  u32(type: number, v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    return this.bytes(type, b);
  }

  s32(type: number, v: number): this {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    return this.bytes(type, b);
  }

  /** NUL-terminated string, as the kernel's NLA_STRING/NLA_NUL_STRING policies accept. */
  string(type: number, s: string): this {
    return this.bytes(type, Buffer.from(`${s}\0`, "utf8"));
  }

  /** A nested block. `flag` sets NLA_F_NESTED, which is right for pure attribute nests but must not be
   * set on blocks that start with a struct (veth/netkit peer info). */
  nest(type: number, build: (w: AttrWriter) => void, flag = true): this {
    const inner = new AttrWriter();
    build(inner);
    return this.bytes(type, inner.toBuffer(), flag);
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.parts);
  }

  toParts(): Uint8Array[] {
    return [...this.parts];
  }
}

/** Attributes by type (flags stripped); the last occurrence wins. */
type AttrMap = Map<number, Buffer>;

export function decodeAttrs(buf: Buffer): AttrMap {
  const map: AttrMap = new Map();
  let rest = buf;
  // parseAttributes would throw on trailing padding shorter than a header; stop there instead.
  while (rest.length >= 4) {
    const { x, consumed } = parseAttribute(rest);
    map.set(x.type & ~NLA_F_NESTED, x.data);
    rest = rest.subarray(align4(consumed));
  }
  return map;
}

export const attrU8 = (m: AttrMap, t: number): number | undefined => {
  const b = m.get(t);
  return b && b.length >= 1 ? b.readUInt8(0) : undefined;
};
export const attrU16 = (m: AttrMap, t: number): number | undefined => {
  const b = m.get(t);
  return b && b.length >= 2 ? b.readUInt16LE(0) : undefined;
};
export const attrU32 = (m: AttrMap, t: number): number | undefined => {
  const b = m.get(t);
  return b && b.length >= 4 ? b.readUInt32LE(0) : undefined;
};
export const attrS32 = (m: AttrMap, t: number): number | undefined => {
  const b = m.get(t);
  return b && b.length >= 4 ? b.readInt32LE(0) : undefined;
};
export const attrString = (m: AttrMap, t: number): string | undefined => {
  const b = m.get(t);
  if (!b) return undefined;
  const nul = b.indexOf(0);
  return b.subarray(0, nul < 0 ? b.length : nul).toString("utf8");
};

/** The parts of an NLMSG_ERROR payload we use: errno (positive, 0 = ack) and the extended ack. */
interface NlErrorInfo {
  errno: number;
  /** NLMSGERR_ATTR_MSG: the kernel's explanation. */
  message: string | undefined;
  /** NLMSGERR_ATTR_OFFS: byte offset of the offending attribute in the request. */
  offset: number | undefined;
  /** Sequence number of the request this answers. */
  requestSeq: number;
}

export function decodeError(payload: Buffer, flags: number): NlErrorInfo {
  const { errno, header } = parseError(payload, flags);
  let message: string | undefined;
  let offset: number | undefined;
  if (flags & NLM_F_ACK_TLVS) {
    // Capped acks echo only the request header; otherwise the whole request precedes the TLVs.
    const echoed = flags & NLM_F_CAPPED ? NLMSG_HDRLEN : align4(header.length);
    const start = 4 + echoed;
    if (payload.length > start) {
      const tlvs = decodeAttrs(payload.subarray(start));
      message = attrString(tlvs, NLMSGERR_ATTR_MSG);
      offset = attrU32(tlvs, NLMSGERR_ATTR_OFFS);
    }
  }
  return { errno: errno === 0 ? 0 : -errno, message: message || undefined, offset, requestSeq: header.seq };
}

// ---- fixed family headers ----

/** struct ifinfomsg (16 bytes). */
interface IfInfoMsg {
  family: number;
  type: number;
  index: number;
  flags: number;
  change: number;
}

export function encodeIfInfoMsg(h: Partial<IfInfoMsg> = {}): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt8(h.family ?? 0, 0);
  b.writeUInt16LE(h.type ?? 0, 2);
  b.writeInt32LE(h.index ?? 0, 4);
  b.writeUInt32LE((h.flags ?? 0) >>> 0, 8);
  b.writeUInt32LE((h.change ?? 0) >>> 0, 12);
  return b;
}

export function decodeIfInfoMsg(b: Buffer): IfInfoMsg {
  return {
    family: b.readUInt8(0),
    type: b.readUInt16LE(2),
    index: b.readInt32LE(4),
    flags: b.readUInt32LE(8),
    change: b.readUInt32LE(12),
  };
}

/** struct ifaddrmsg (8 bytes). */
interface IfAddrMsg {
  family: number;
  prefixLength: number;
  flags: number;
  scope: number;
  index: number;
}

export function encodeIfAddrMsg(h: Partial<IfAddrMsg> = {}): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt8(h.family ?? 0, 0);
  b.writeUInt8(h.prefixLength ?? 0, 1);
  b.writeUInt8((h.flags ?? 0) & 0xff, 2);
  b.writeUInt8(h.scope ?? 0, 3);
  b.writeUInt32LE(h.index ?? 0, 4);
  return b;
}

export function decodeIfAddrMsg(b: Buffer): IfAddrMsg {
  return {
    family: b.readUInt8(0),
    prefixLength: b.readUInt8(1),
    flags: b.readUInt8(2),
    scope: b.readUInt8(3),
    index: b.readUInt32LE(4),
  };
}

/** struct rtmsg (12 bytes). */
interface RtMsg {
  family: number;
  dstLength: number;
  srcLength: number;
  tos: number;
  table: number;
  protocol: number;
  scope: number;
  type: number;
  flags: number;
}

export function encodeRtMsg(h: Partial<RtMsg> = {}): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt8(h.family ?? 0, 0);
  b.writeUInt8(h.dstLength ?? 0, 1);
  b.writeUInt8(h.srcLength ?? 0, 2);
  b.writeUInt8(h.tos ?? 0, 3);
  b.writeUInt8(h.table ?? 0, 4);
  b.writeUInt8(h.protocol ?? 0, 5);
  b.writeUInt8(h.scope ?? 0, 6);
  b.writeUInt8(h.type ?? 0, 7);
  b.writeUInt32LE((h.flags ?? 0) >>> 0, 8);
  return b;
}

export function decodeRtMsg(b: Buffer): RtMsg {
  return {
    family: b.readUInt8(0),
    dstLength: b.readUInt8(1),
    srcLength: b.readUInt8(2),
    tos: b.readUInt8(3),
    table: b.readUInt8(4),
    protocol: b.readUInt8(5),
    scope: b.readUInt8(6),
    type: b.readUInt8(7),
    flags: b.readUInt32LE(8),
  };
}

/** struct ndmsg (12 bytes). */
interface NdMsg {
  family: number;
  index: number;
  state: number;
  flags: number;
  type: number;
}

export function encodeNdMsg(h: Partial<NdMsg> = {}): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt8(h.family ?? 0, 0);
  b.writeInt32LE(h.index ?? 0, 4);
  b.writeUInt16LE(h.state ?? 0, 8);
  b.writeUInt8(h.flags ?? 0, 10);
  b.writeUInt8(h.type ?? 0, 11);
  return b;
}

export function decodeNdMsg(b: Buffer): NdMsg {
  return {
    family: b.readUInt8(0),
    index: b.readInt32LE(4),
    state: b.readUInt16LE(8),
    flags: b.readUInt8(10),
    type: b.readUInt8(11),
  };
}

/** Splits a reply payload into its fixed header and attributes; too-short payloads are an error. */
export function splitPayload(payload: Buffer, headerLength: number, what: string): [Buffer, AttrMap] {
  if (payload.length < headerLength) {
    throw new ProtocolError(
      "rtnetlink",
      `truncated ${what} message (${payload.length} < ${headerLength} bytes)`,
    );
  }
  return [payload.subarray(0, headerLength), decodeAttrs(payload.subarray(align4(headerLength)))];
}
