import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { ProtocolError } from "../../src/errors.js";
import { encodeFrame, frameMessage, MUX_WRITE_SPLIT, Multiplexer } from "../../src/nri/mux.js";
import { LengthPrefixedDecoder } from "../../src/ttrpc/framing.js";

function bytes(n: number, seed = 1): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 13 + seed) & 0xff;
  return b;
}

/** A trunk whose writes are recorded as separate chunks; `feed` plays the runtime writing to us. */
function fakeTrunk() {
  const writes: Buffer[] = [];
  const t = new PassThrough();
  const origWrite = t.write.bind(t);
  // Record our writes without echoing them back into the readable side.
  t.write = ((chunk: Buffer, ...rest: unknown[]) => {
    writes.push(Buffer.from(chunk));
    const cb = rest.find((r) => typeof r === "function") as ((e?: Error | null) => void) | undefined;
    cb?.(null);
    return true;
  }) as typeof t.write;
  return { trunk: t, writes, feed: (b: Buffer) => t.push(b), origWrite };
}

function parseFrames(buf: Buffer): { conn: number; len: number }[] {
  const out: { conn: number; len: number }[] = [];
  const d = new LengthPrefixedDecoder({
    headerSize: 8,
    lengthOf: (h) => h.readUInt32BE(4),
    maxLength: 1 << 30,
    onFrame: (h, p) => out.push({ conn: h.readUInt32BE(0), len: p.length }),
    onOversized: () => {},
  });
  d.push(buf);
  return out;
}

describe("NRI multiplexer framing (write side, Go-identical rule)", () => {
  it("sends a message of at most 4096 bytes as one frame", () => {
    for (const n of [1, 10, 4095, 4096]) {
      const f = frameMessage(2, bytes(n));
      expect(f.length).toBe(1);
      expect(f[0]!.readUInt32BE(0)).toBe(2);
      expect(f[0]!.readUInt32BE(4)).toBe(n);
      expect(f[0]!.subarray(8)).toEqual(bytes(n));
    }
  });

  it("sends a larger message as 4096 bytes + the rest, and never an empty frame", () => {
    for (const n of [4097, 6094, 20096, (4 << 20) + 10]) {
      const msg = bytes(n, 5);
      const f = frameMessage(1, msg);
      expect(f.map((x) => x.readUInt32BE(4))).toEqual([MUX_WRITE_SPLIT, n - MUX_WRITE_SPLIT]);
      expect(Buffer.concat(f.map((x) => x.subarray(8))).equals(msg)).toBe(true);
    }
    expect(frameMessage(1, Buffer.alloc(0))).toEqual([]);
  });

  it("writes each frame with its own socket write, one message at a time", async () => {
    const { trunk, writes } = fakeTrunk();
    const mux = new Multiplexer(trunk);
    const c2 = mux.open(2);
    const c1 = mux.open(1);
    await new Promise<void>((r) => c2.write(bytes(10_000), () => r()));
    await new Promise<void>((r) => c1.write(bytes(100), () => r()));
    expect(writes.map((w) => [w.readUInt32BE(0), w.readUInt32BE(4), w.length])).toEqual([
      [2, 4096, 4104],
      [2, 10_000 - 4096, 10_000 - 4096 + 8],
      [1, 100, 108],
    ]);
    expect(parseFrames(Buffer.concat(writes))).toEqual([
      { conn: 2, len: 4096 },
      { conn: 2, len: 10_000 - 4096 },
      { conn: 1, len: 100 },
    ]);
    mux.close();
  });
});

describe("NRI multiplexer (read side)", () => {
  it("reassembles per connection from split, coalesced and interleaved frames", async () => {
    const { trunk, feed } = fakeTrunk();
    const mux = new Multiplexer(trunk);
    const got = new Map<number, Buffer[]>();
    for (const id of [1, 2]) {
      const c = mux.open(id);
      got.set(id, []);
      c.on("data", (d: Buffer) => got.get(id)!.push(d));
    }
    const a = bytes(10_835, 3);
    const b = bytes(300, 4);
    // the Go side's 4096 + rest pattern, interleaved with conn 2 and an unopened conn 7
    const wire = Buffer.concat([
      encodeFrame(1, a.subarray(0, 4096)),
      encodeFrame(2, b.subarray(0, 100)),
      encodeFrame(7, bytes(50)),
      encodeFrame(1, a.subarray(4096)),
      encodeFrame(2, Buffer.alloc(0)),
      encodeFrame(2, b.subarray(100)),
    ]);
    for (const byte of wire) feed(Buffer.from([byte]));
    await new Promise((r) => setImmediate(r));
    expect(Buffer.concat(got.get(1)!).equals(a)).toBe(true);
    expect(Buffer.concat(got.get(2)!)).toEqual(b);
    expect(got.get(1)!.every((x) => x.length > 0)).toBe(true);
    mux.close();
  });

  it("closes the trunk with a ProtocolError on an oversized frame instead of buffering it", async () => {
    const { trunk, feed } = fakeTrunk();
    const mux = new Multiplexer(trunk, { maxFrameSize: 1024 });
    const c1 = mux.open(1);
    const closedConn = new Promise((r) => c1.once("close", r));
    const closed = new Promise<Error | undefined>((r) => mux.once("close", r));
    const hdr = Buffer.alloc(8);
    hdr.writeUInt32BE(1, 0);
    hdr.writeUInt32BE(0xfffffff0, 4);
    feed(hdr);
    const err = await closed;
    expect(err).toBeInstanceOf(ProtocolError);
    expect(err?.message).toMatch(/announces 4294967280 bytes/);
    await closedConn;
    expect(trunk.destroyed).toBe(true);
    expect(mux.closed).toBe(true);
  });

  it("drops conn 0 and garbage without crashing", async () => {
    const { trunk, feed } = fakeTrunk();
    const mux = new Multiplexer(trunk, { maxFrameSize: 4096 });
    const c1 = mux.open(1);
    const seen: Buffer[] = [];
    c1.on("data", (d: Buffer) => seen.push(d));
    feed(encodeFrame(0, bytes(20)));
    await new Promise((r) => setImmediate(r));
    expect(seen).toEqual([]);
    const closed = new Promise<Error | undefined>((r) => mux.once("close", r));
    feed(Buffer.from("this is not a multiplexer frame at all, just text"));
    expect(await closed).toBeInstanceOf(ProtocolError);
    expect(() => mux.open(3)).not.toThrow();
  });

  it("fails writes after close and refuses bad conn ids", async () => {
    const { trunk } = fakeTrunk();
    const mux = new Multiplexer(trunk);
    const c = mux.open(1);
    expect(() => mux.open(1)).toThrow(/already open/);
    expect(() => mux.open(0)).toThrow(RangeError);
    mux.close();
    const err = await new Promise<Error | null | undefined>((r) => {
      c.on("error", () => {});
      c.write(Buffer.from("x"), (e) => r(e));
    });
    expect(err).toBeInstanceOf(Error);
  });
});
