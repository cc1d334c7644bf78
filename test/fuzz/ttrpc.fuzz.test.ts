// The ttrpc decoder NRI's messages arrive through, under fuzzing: a valid message stream split at any
// points decodes to exactly its messages; any byte stream decodes without throwing and holds at most
// one header plus one maximal message (oversized ones are skipped, not buffered); any request
// envelope bytes decode or fail with an Error the server answers as INVALID_ARGUMENT.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { encodeMessage, HEADER_SIZE, MessageDecoder, MessageType } from "../../src/ttrpc/framing.js";
import { decodeRequest, encodeRequest } from "../../src/ttrpc/proto.js";
import { params } from "./fuzz.js";

const MAX = 4096;

/** Splits bytes at the given cut points (sorted, deduplicated, in range). */
function split(bytes: Buffer, cuts: number[]): Buffer[] {
  const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of [...at, bytes.length]) {
    out.push(bytes.subarray(prev, c));
    prev = c;
  }
  return out;
}

describe("ttrpc framing (fuzz)", () => {
  it("decodes a valid stream split anywhere into exactly its messages", () => {
    const message = fc.record({
      streamId: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
      type: fc.constantFrom(MessageType.REQUEST, MessageType.RESPONSE, MessageType.DATA),
      data: fc.uint8Array({ maxLength: 600 }),
    });
    fc.assert(
      fc.property(
        fc.array(message, { maxLength: 6 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        (msgs, cuts) => {
          const stream = Buffer.concat(msgs.map((m) => encodeMessage(m.streamId, m.type, 0, m.data)));
          const got: { streamId: number; type: number; data: Buffer }[] = [];
          const d = new MessageDecoder({
            maxMessageSize: MAX,
            onMessage: (h, data) => got.push({ streamId: h.streamId, type: h.type, data }),
            onOversized: () => {
              throw new Error("no message here is oversized");
            },
          });
          for (const part of split(stream, cuts)) d.push(part);
          expect(got.map((g) => [g.streamId, g.type, Buffer.from(g.data).toString("hex")])).toEqual(
            msgs.map((m) => [m.streamId, m.type, Buffer.from(m.data).toString("hex")]),
          );
          expect(d.idle).toBe(true);
        },
      ),
      params(),
    );
  });

  it("takes any byte stream without throwing and never buffers more than one message", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 20 }), (chunks) => {
        const d = new MessageDecoder({
          maxMessageSize: MAX,
          onMessage: () => undefined,
          onOversized: () => undefined,
        });
        for (const c of chunks) {
          d.push(c);
          expect(d.buffered).toBeLessThanOrEqual(HEADER_SIZE + MAX);
        }
      }),
      params(),
    );
  });

  it("decodes any request envelope bytes or fails with an Error (answered as INVALID_ARGUMENT)", () => {
    const valid = encodeRequest({
      service: "nri.pkg.api.v1alpha1.Plugin",
      method: "Configure",
      payload: new Uint8Array(3),
      timeoutNano: 0,
      metadata: [],
    });
    const bytes = fc.oneof(
      fc.uint8Array({ maxLength: 200 }),
      fc
        .tuple(fc.nat(valid.length), fc.uint8Array({ maxLength: 8 }))
        .map(([at, junk]) =>
          Buffer.concat([Buffer.from(valid).subarray(0, at), junk, Buffer.from(valid).subarray(at)]),
        ),
    );
    fc.assert(
      fc.property(bytes, (b) => {
        try {
          decodeRequest(b);
        } catch (e) {
          expect(e).toBeInstanceOf(Error);
        }
      }),
      params(),
    );
  });
});
