import { describe, expect, it } from "vitest";
import { bytes, ipv4, ipv6, struct, u8, u16, u32, u64 } from "../../src/bpf/codec.js";
import { InvalidArgumentError } from "../../src/errors.js";
import { hookCounter, hookKey } from "../helpers/bpf-test-structs.js";

describe("integer codecs", () => {
  it("round-trip in host byte order and check ranges", () => {
    expect(u32.decode(u32.encode(0xdeadbeef))).toBe(0xdeadbeef);
    expect(u64.decode(u64.encode(0xffffffffffffffffn))).toBe(0xffffffffffffffffn);
    expect(u16.decode(u16.encode(65535))).toBe(65535);
    expect(u8.encode(7)).toEqual(Buffer.from([7]));
    expect(() => u32.encode(-1)).toThrow(InvalidArgumentError);
    expect(() => u32.encode(2 ** 32)).toThrow(InvalidArgumentError);
    expect(() => u8.encode(1.5)).toThrow(InvalidArgumentError);
    expect(() => u64.encode(-1n)).toThrow(InvalidArgumentError);
    expect(() => u32.decode(Buffer.alloc(3))).toThrow(InvalidArgumentError);
  });

  it("bytes has a fixed length", () => {
    const b = bytes(3);
    expect(b.decode(b.encode(Buffer.from([1, 2, 3])))).toEqual(Buffer.from([1, 2, 3]));
    expect(() => b.encode(Buffer.from([1]))).toThrow(InvalidArgumentError);
  });
});

describe("address codecs", () => {
  it("IPv4 in network order", () => {
    expect(ipv4.encode("10.47.0.1")).toEqual(Buffer.from([10, 47, 0, 1]));
    expect(ipv4.decode(Buffer.from([192, 0, 2, 255]))).toBe("192.0.2.255");
    expect(() => ipv4.encode("10.47.0")).toThrow(InvalidArgumentError);
  });

  it("IPv6 in network order, decoded to RFC 5952 form", () => {
    const b = ipv6.encode("fd47::1");
    expect(b.length).toBe(16);
    expect(b.subarray(0, 2)).toEqual(Buffer.from([0xfd, 0x47]));
    expect(b[15]).toBe(1);
    for (const [text, canonical] of [
      ["fd47:0:0:0:0:0:0:1", "fd47::1"],
      ["::", "::"],
      ["::1", "::1"],
      ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
      ["2001:DB8::FFFF:0:1", "2001:db8::ffff:0:1"],
      ["1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"],
      ["1:0:3:4:5:6:7:8", "1:0:3:4:5:6:7:8"],
      ["::ffff:192.0.2.1", "::ffff:c000:201"],
      ["fe80::", "fe80::"],
    ] as const) {
      expect(ipv6.decode(ipv6.encode(text))).toBe(canonical);
    }
    expect(() => ipv6.encode("10.0.0.1")).toThrow(InvalidArgumentError);
  });
});

describe("struct codecs", () => {
  it("writes fields at their offsets and zeroes padding", () => {
    const enc = hookKey.encode({ ifindex: 0x01020304, direction: 1, slot: 1 });
    expect(enc.length).toBe(8);
    expect(u32.decode(enc, 0)).toBe(0x01020304);
    expect(enc.subarray(4)).toEqual(Buffer.from([1, 1, 0, 0]));
    expect(hookKey.decode(enc)).toEqual({ ifindex: 0x01020304, direction: 1, slot: 1 });
    expect(hookCounter.decode(hookCounter.encode({ packets: 5n, bytes: 490n }))).toEqual({
      packets: 5n,
      bytes: 490n,
    });
    expect(hookKey.layout.map((m) => [m.name, m.offset, m.size, m.padding])).toEqual([
      ["ifindex", 0, 4, false],
      ["direction", 4, 1, false],
      ["slot", 5, 1, false],
      ["pad", 6, 2, true],
    ]);
  });

  it("rejects overlapping or oversized layouts", () => {
    expect(() =>
      struct<{ a: number; b: number }>({
        name: "bad",
        size: 8,
        fields: { a: { offset: 0, codec: u32 }, b: { offset: 2, codec: u32 } },
      }),
    ).toThrow(/overlaps/);
    expect(() =>
      struct<{ a: bigint }>({ name: "bad", size: 4, fields: { a: { offset: 0, codec: u64 } } }),
    ).toThrow(/beyond size/);
  });
});
