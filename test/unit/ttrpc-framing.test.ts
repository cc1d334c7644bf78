import { describe, expect, it } from "vitest";
import {
  decodeHeader,
  encodeMessage,
  HEADER_SIZE,
  MAX_MESSAGE_SIZE,
  MessageDecoder,
  type MessageHeader,
  MessageType,
} from "../../src/ttrpc/framing.js";

interface Got {
  h: MessageHeader;
  data: Buffer;
}

function collector(maxMessageSize?: number) {
  const msgs: Got[] = [];
  const oversized: MessageHeader[] = [];
  const dec = new MessageDecoder({
    ...(maxMessageSize !== undefined ? { maxMessageSize } : {}),
    onMessage: (h, data) => msgs.push({ h, data }),
    onOversized: (h) => oversized.push(h),
  });
  return { dec, msgs, oversized };
}

function bytes(n: number, seed = 1): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

describe("ttrpc framing", () => {
  it("encodes the 10-byte big-endian header", () => {
    const m = encodeMessage(0x01020305, MessageType.RESPONSE, 0x04, Buffer.from("abc"));
    expect(m.subarray(0, HEADER_SIZE)).toEqual(Buffer.from([0, 0, 0, 3, 1, 2, 3, 5, 2, 4]));
    expect(m.subarray(HEADER_SIZE).toString()).toBe("abc");
    expect(decodeHeader(m)).toEqual({ length: 3, streamId: 0x01020305, type: 2, flags: 4 });
  });

  it("decodes messages fed byte by byte", () => {
    const { dec, msgs } = collector();
    const a = encodeMessage(1, MessageType.REQUEST, 0, bytes(5000));
    const b = encodeMessage(3, MessageType.REQUEST, 0, Buffer.alloc(0));
    const c = encodeMessage(5, MessageType.DATA, 1, bytes(7, 9));
    for (const byte of Buffer.concat([a, b, c])) dec.push(Buffer.from([byte]));
    expect(msgs.map((m) => [m.h.streamId, m.h.type, m.h.flags, m.data.length])).toEqual([
      [1, 1, 0, 5000],
      [3, 1, 0, 0],
      [5, 3, 1, 7],
    ]);
    expect(msgs[0]?.data.equals(bytes(5000))).toBe(true);
    expect(dec.idle).toBe(true);
    expect(dec.buffered).toBe(0);
  });

  it("decodes coalesced messages and messages split at every offset", () => {
    const stream = Buffer.concat([
      encodeMessage(1, 1, 0, bytes(10)),
      encodeMessage(3, 2, 0, bytes(4097, 3)),
      encodeMessage(5, 2, 0, Buffer.alloc(0)),
    ]);
    const whole = collector();
    whole.dec.push(stream);
    expect(whole.msgs.map((m) => m.data.length)).toEqual([10, 4097, 0]);
    for (let cut = 1; cut < stream.length; cut += 97) {
      const c = collector();
      c.dec.push(stream.subarray(0, cut));
      c.dec.push(stream.subarray(cut));
      expect(
        Buffer.concat(c.msgs.map((m) => m.data)).equals(Buffer.concat(whole.msgs.map((m) => m.data))),
      ).toBe(true);
      expect(c.msgs.length).toBe(3);
    }
  });

  it("skips oversized messages without buffering them and resynchronizes after", () => {
    const { dec, msgs, oversized } = collector(1024);
    const big = encodeMessage(7, MessageType.REQUEST, 0, bytes(5000));
    const next = encodeMessage(9, MessageType.REQUEST, 0, bytes(3));
    const all = Buffer.concat([big, next]);
    for (let i = 0; i < all.length; i += 100) {
      dec.push(all.subarray(i, i + 100));
      expect(dec.buffered).toBeLessThanOrEqual(HEADER_SIZE + 1024);
    }
    expect(oversized).toEqual([{ length: 5000, streamId: 7, type: 1, flags: 0 }]);
    expect(msgs.map((m) => m.h.streamId)).toEqual([9]);
  });

  it("defaults the limit to 4 MiB and accepts a message of exactly that size", () => {
    const { dec, msgs, oversized } = collector();
    dec.push(encodeMessage(1, 1, 0, Buffer.alloc(MAX_MESSAGE_SIZE)));
    dec.push(encodeMessage(3, 1, 0, Buffer.alloc(MAX_MESSAGE_SIZE + 1)));
    expect(msgs.map((m) => m.data.length)).toEqual([MAX_MESSAGE_SIZE]);
    expect(oversized.map((h) => h.streamId)).toEqual([3]);
  });

  it("survives random garbage with bounded memory", () => {
    const { dec } = collector(64 * 1024);
    let seed = 12345;
    for (let i = 0; i < 2000; i++) {
      const chunk = Buffer.allocUnsafe(1 + (i % 300));
      for (let j = 0; j < chunk.length; j++) {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        chunk[j] = seed & 0xff;
      }
      expect(() => dec.push(chunk)).not.toThrow();
      expect(dec.buffered).toBeLessThanOrEqual(HEADER_SIZE + 64 * 1024);
    }
  });
});
