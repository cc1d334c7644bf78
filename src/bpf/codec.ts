// Byte codecs for map keys and values. Integers use the host's byte order (BPF maps hold native
// endian values); addresses are kept in network order, as the programs read them from packets.
import { endianness } from "node:os";
import { InvalidArgumentError } from "../errors.js";
import { IpAddress } from "../util/ip.js";

export interface Codec<T> {
  /** Encoded size in bytes. */
  readonly size: number;
  /** Writes value at target[offset .. offset + size). */
  write(value: T, target: Buffer, offset: number): void;
  /** Reads a value from source[offset .. offset + size). */
  read(source: Buffer, offset: number): T;
  /** A fresh, zero-padded buffer holding value. */
  encode(value: T): Buffer;
  decode(source: Buffer, offset?: number): T;
}

/** Builds a Codec from size/write/read. */
function codec<T>(size: number, write: Codec<T>["write"], read: Codec<T>["read"]): Codec<T> {
  return {
    size,
    write,
    read,
    encode(value: T): Buffer {
      const b = Buffer.alloc(size);
      write(value, b, 0);
      return b;
    },
    decode(source: Buffer, offset = 0): T {
      if (source.length < offset + size) {
        throw new InvalidArgumentError(
          `cannot decode ${size} bytes at offset ${offset} of a ${source.length}-byte buffer`,
        );
      }
      return read(source, offset);
    },
  };
}

const LE = endianness() === "LE";

function checkInt(v: number, max: number, what: string): void {
  if (!Number.isInteger(v) || v < 0 || v > max) {
    throw new InvalidArgumentError(`${what} must be an integer in [0, ${max}], got ${v}`);
  }
}

export const u8: Codec<number> = codec(
  1,
  (v, b, o) => {
    checkInt(v, 0xff, "u8");
    b.writeUInt8(v, o);
  },
  (b, o) => b.readUInt8(o),
);

export const u16: Codec<number> = codec(
  2,
  (v, b, o) => {
    checkInt(v, 0xffff, "u16");
    if (LE) b.writeUInt16LE(v, o);
    else b.writeUInt16BE(v, o);
  },
  (b, o) => (LE ? b.readUInt16LE(o) : b.readUInt16BE(o)),
);

export const u32: Codec<number> = codec(
  4,
  (v, b, o) => {
    checkInt(v, 0xffffffff, "u32");
    if (LE) b.writeUInt32LE(v, o);
    else b.writeUInt32BE(v, o);
  },
  (b, o) => (LE ? b.readUInt32LE(o) : b.readUInt32BE(o)),
);

export const u64: Codec<bigint> = codec(
  8,
  (v, b, o) => {
    if (v < 0n || v > 0xffffffffffffffffn) throw new InvalidArgumentError(`u64 out of range: ${v}`);
    if (LE) b.writeBigUInt64LE(v, o);
    else b.writeBigUInt64BE(v, o);
  },
  (b, o) => (LE ? b.readBigUInt64LE(o) : b.readBigUInt64BE(o)),
);

/** A 16-bit value in network byte order (ports). */
export const be16: Codec<number> = codec(
  2,
  (v, b, o) => {
    checkInt(v, 0xffff, "be16");
    b.writeUInt16BE(v, o);
  },
  (b, o) => b.readUInt16BE(o),
);

/** Raw bytes of a fixed length. */
export function bytes(size: number): Codec<Buffer> {
  return codec(
    size,
    (v, b, o) => {
      if (v.length !== size) throw new InvalidArgumentError(`expected ${size} bytes, got ${v.length}`);
      v.copy(b, o);
    },
    (b, o) => Buffer.from(b.subarray(o, o + size)),
  );
}

function ipCodec(family: 4 | 6): Codec<string> {
  const size = family === 4 ? 4 : 16;
  return codec(
    size,
    (v, b, o) => {
      const ip = IpAddress.parse(v);
      if (ip.family !== family) throw new InvalidArgumentError(`not an IPv${family} address: ${v}`);
      ip.toBytes().copy(b, o);
    },
    (b, o) => IpAddress.fromBytes(b.subarray(o, o + size)).text,
  );
}

/** Dotted-quad IPv4 address, 4 bytes in network order. */
export const ipv4: Codec<string> = ipCodec(4);

/** IPv6 address, 16 bytes in network order; decodes to the RFC 5952 text form. */
export const ipv6: Codec<string> = ipCodec(6);

interface FieldSpec<V> {
  offset: number;
  codec: Codec<V>;
}

type StructFields<T> = { [K in keyof T]: FieldSpec<T[K]> };

/** Bytes the C struct reserves and the codec always writes as zero. */
interface PaddingSpec {
  name: string;
  offset: number;
  size: number;
}

interface StructDef<T> {
  /** The C struct name (as in BTF). */
  name: string;
  size: number;
  /** TS field name = C member name. */
  fields: StructFields<T>;
  padding?: readonly PaddingSpec[];
}

export interface StructCodec<T> extends Codec<T> {
  readonly name: string;
  /** Every member in offset order, padding included: what the C side's BTF must show. */
  readonly layout: readonly { name: string; offset: number; size: number; padding: boolean }[];
}

/** A fixed-layout struct codec with explicit offsets; unlisted bytes are written as zero. */
export function struct<T extends object>(def: StructDef<T>): StructCodec<T> {
  const entries = Object.entries(def.fields) as [keyof T & string, FieldSpec<unknown>][];
  const layout = [
    ...entries.map(([name, f]) => ({ name, offset: f.offset, size: f.codec.size, padding: false })),
    ...(def.padding ?? []).map((p) => ({ ...p, padding: true })),
  ].sort((a, b) => a.offset - b.offset);
  let end = 0;
  for (const m of layout) {
    if (m.offset < end)
      throw new InvalidArgumentError(`struct ${def.name}: member ${m.name} overlaps the previous one`);
    end = m.offset + m.size;
  }
  if (end > def.size)
    throw new InvalidArgumentError(`struct ${def.name}: members end at ${end}, beyond size ${def.size}`);
  const base = codec<T>(
    def.size,
    (v, b, o) => {
      b.fill(0, o, o + def.size);
      for (const [name, f] of entries) f.codec.write(v[name], b, o + f.offset);
    },
    (b, o) => {
      const out: Partial<Record<keyof T, unknown>> = {};
      for (const [name, f] of entries) out[name] = f.codec.read(b, o + f.offset);
      return out as T;
    },
  );
  return { ...base, name: def.name, layout };
}
