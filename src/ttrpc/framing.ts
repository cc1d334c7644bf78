// ttrpc message framing: a 10-byte big-endian header (u32 length, u32 stream id, u8 type, u8 flags)
// followed by `length` bytes of data. `LengthPrefixedDecoder` is the incremental decoder shared with the
// NRI multiplexer (8-byte header): it copies payload bytes straight into a buffer of the announced size,
// so split and coalesced chunks cost O(bytes), and it never holds more than one header plus one
// payload of at most `maxLength` bytes. Longer payloads are skipped as they stream past, not buffered.

import type { Duplex } from "node:stream";

export const HEADER_SIZE = 10;
/** ttrpc's default maximum message data size (4 MiB). */
export const MAX_MESSAGE_SIZE = 4 << 20;

export const MessageType = {
  REQUEST: 1,
  RESPONSE: 2,
  DATA: 3,
} as const;

export interface MessageHeader {
  length: number;
  streamId: number;
  type: number;
  flags: number;
}

/** One buffer holding header + data, ready for a single `write()`. */
export function encodeMessage(streamId: number, type: number, flags: number, data: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(HEADER_SIZE + data.length);
  out.writeUInt32BE(data.length, 0);
  out.writeUInt32BE(streamId >>> 0, 4);
  out.writeUInt8(type, 8);
  out.writeUInt8(flags, 9);
  out.set(data, HEADER_SIZE);
  return out;
}

export function decodeHeader(h: Buffer): MessageHeader {
  return {
    length: h.readUInt32BE(0),
    streamId: h.readUInt32BE(4),
    type: h.readUInt8(8),
    flags: h.readUInt8(9),
  };
}

interface LengthPrefixedDecoderOptions {
  headerSize: number;
  /** Payload length announced by a complete header. */
  lengthOf(header: Buffer): number;
  /** Longer payloads are skipped and reported through `onOversized`. */
  maxLength: number;
  /** A complete frame; `payload` is owned by the callee. `header` is only valid during the call. */
  onFrame(header: Buffer, payload: Buffer): void;
  /** Called once the whole oversized payload has been skipped. */
  onOversized(header: Buffer, length: number): void;
}

export class LengthPrefixedDecoder {
  private readonly opts: LengthPrefixedDecoderOptions;
  private readonly header: Buffer;
  private headerFill = 0;
  private payload: Buffer | undefined;
  private payloadFill = 0;
  private skipRemaining = 0;
  private skipping = false;

  constructor(opts: LengthPrefixedDecoderOptions) {
    this.opts = opts;
    this.header = Buffer.alloc(opts.headerSize);
  }

  /** Bytes held for an incomplete frame (header + payload so far); bounded by headerSize + maxLength. */
  get buffered(): number {
    return this.headerFill + this.payloadFill;
  }

  /** True when no partial frame is pending. */
  get idle(): boolean {
    return this.headerFill === 0 && this.payload === undefined && !this.skipping;
  }

  push(chunk: Uint8Array): void {
    let pos = 0;
    const size = this.opts.headerSize;
    while (pos < chunk.length) {
      if (this.skipping) {
        const n = Math.min(this.skipRemaining, chunk.length - pos);
        this.skipRemaining -= n;
        pos += n;
        if (this.skipRemaining === 0) this.finishSkip();
        continue;
      }
      if (this.payload === undefined) {
        const n = Math.min(size - this.headerFill, chunk.length - pos);
        this.header.set(chunk.subarray(pos, pos + n), this.headerFill);
        this.headerFill += n;
        pos += n;
        if (this.headerFill < size) break;
        const length = this.opts.lengthOf(this.header);
        if (length > this.opts.maxLength) {
          this.skipping = true;
          this.skipRemaining = length;
          if (length === 0) this.finishSkip();
          continue;
        }
        if (length === 0) {
          this.emit(Buffer.alloc(0));
          continue;
        }
        this.payload = Buffer.allocUnsafe(length);
        this.payloadFill = 0;
        continue;
      }
      const n = Math.min(this.payload.length - this.payloadFill, chunk.length - pos);
      this.payload.set(chunk.subarray(pos, pos + n), this.payloadFill);
      this.payloadFill += n;
      pos += n;
      if (this.payloadFill === this.payload.length) {
        const p = this.payload;
        this.payload = undefined;
        this.payloadFill = 0;
        this.emit(p);
      }
    }
  }

  private emit(payload: Buffer): void {
    this.headerFill = 0;
    this.opts.onFrame(this.header, payload);
  }

  private finishSkip(): void {
    this.skipping = false;
    this.headerFill = 0;
    this.opts.onOversized(this.header, this.opts.lengthOf(this.header));
  }
}

/**
 * Feeds what `stream` reads to `decoder` until the stream errors, closes or ends, or `push` throws:
 * then `onEnd` runs with the error, if any (it may run more than once). Returns a function that stops
 * the feeding. The ttrpc client and server and the NRI multiplexer read their streams this way.
 */
export function readFrames(
  stream: Duplex,
  decoder: { push(chunk: Uint8Array): void },
  onEnd: (err: Error | undefined) => void,
): () => void {
  const onData = (chunk: Buffer) => {
    try {
      decoder.push(chunk);
    } catch (e) {
      onEnd(e instanceof Error ? e : new Error(String(e)));
    }
  };
  const onClose = () => onEnd(undefined);
  stream.on("data", onData);
  stream.on("error", onEnd);
  stream.on("close", onClose);
  stream.on("end", onClose);
  return () => stream.off("data", onData);
}

/** Incremental decoder for ttrpc messages. */
export class MessageDecoder {
  private readonly inner: LengthPrefixedDecoder;

  constructor(opts: {
    maxMessageSize?: number;
    onMessage(header: MessageHeader, data: Buffer): void;
    onOversized(header: MessageHeader): void;
  }) {
    this.inner = new LengthPrefixedDecoder({
      headerSize: HEADER_SIZE,
      lengthOf: (h) => h.readUInt32BE(0),
      maxLength: opts.maxMessageSize ?? MAX_MESSAGE_SIZE,
      onFrame: (h, p) => opts.onMessage(decodeHeader(h), p),
      onOversized: (h) => opts.onOversized(decodeHeader(h)),
    });
  }

  push(chunk: Uint8Array): void {
    this.inner.push(chunk);
  }

  get buffered(): number {
    return this.inner.buffered;
  }

  get idle(): boolean {
    return this.inner.idle;
  }
}
