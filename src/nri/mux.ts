// containerd/nri `pkg/net/multiplex`: one socket (the trunk) carries several logical byte streams.
// Frame = u32 BE conn_id, u32 BE length, payload. conn_id 0 is reserved; frames for ids nobody
// opened are dropped.
//
// Writing follows the rule of the Go implementation: each write() on a logical connection must be one
// whole ttrpc message; it goes out as one frame when it is at most 4096 bytes, otherwise as a
// 4096-byte frame followed by one frame with the rest. (Larger first frames break the runtime's
// bufio reader, which refuses frames bigger than its free buffer.) Each frame is a single
// socket.write, so frames from different connections never interleave.
import { EventEmitter } from "node:events";
import { Duplex } from "node:stream";
import type { Logger } from "pino";
import { pino } from "pino";
import { AlreadyExistsError, ClosedError, ProtocolError } from "../errors.js";
import { LengthPrefixedDecoder, readFrames } from "../ttrpc/framing.js";

export const MUX_HEADER_SIZE = 8;
/** The runtime's bufio.Reader size: larger first frames are not readable by the Go side. */
export const MUX_WRITE_SPLIT = 4096;
/** nri v0.6.1 refuses frames above 16 MiB; accept up to that when reading. */
export const MUX_MAX_FRAME = 16 << 20;

/** Logical connection ids used by NRI. */
export const PLUGIN_SERVICE_CONN = 1;
export const RUNTIME_SERVICE_CONN = 2;

export function encodeFrame(connId: number, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(MUX_HEADER_SIZE + payload.length);
  out.writeUInt32BE(connId >>> 0, 0);
  out.writeUInt32BE(payload.length, 4);
  out.set(payload, MUX_HEADER_SIZE);
  return out;
}

/** The frames one ttrpc message is sent as (Go-identical rule). Never returns empty frames. */
export function frameMessage(connId: number, message: Uint8Array): Buffer[] {
  if (message.length === 0) return [];
  if (message.length <= MUX_WRITE_SPLIT) return [encodeFrame(connId, message)];
  return [
    encodeFrame(connId, message.subarray(0, MUX_WRITE_SPLIT)),
    encodeFrame(connId, message.subarray(MUX_WRITE_SPLIT)),
  ];
}

export interface MultiplexerOptions {
  /** Largest frame payload accepted (default 16 MiB); a larger one is a protocol error closing the trunk. */
  maxFrameSize?: number;
  log?: Logger;
}

type MuxEvents = { close: [err: Error | undefined] };

/** A logical connection: a Duplex whose writes must each be one whole message. */
export class MuxConn extends Duplex {
  readonly connId: number;
  private readonly mux: Multiplexer;

  constructor(mux: Multiplexer, connId: number) {
    super({ allowHalfOpen: false });
    this.mux = mux;
    this.connId = connId;
  }

  override _read(): void {
    // Data is pushed as frames arrive; the consumers (ttrpc) read in flowing mode.
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.mux.send(this.connId, chunk, cb);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.mux.forget(this.connId, this);
    cb(err);
  }

  /** Called by the multiplexer with a frame payload for this connection. */
  deliver(payload: Buffer): void {
    this.push(payload);
  }
}

export class Multiplexer extends EventEmitter<MuxEvents> {
  private readonly trunk: Duplex;
  private readonly log: Logger;
  private readonly conns = new Map<number, MuxConn>();
  private readonly stopReading: () => void;
  private closedWith: Error | null = null;

  constructor(trunk: Duplex, opts: MultiplexerOptions = {}) {
    super();
    this.trunk = trunk;
    this.log = opts.log ?? pino({ level: "silent" });
    const maxFrame = opts.maxFrameSize ?? MUX_MAX_FRAME;
    // An oversized frame is fatal (the Go writer never produces one): fail as soon as its header is
    // complete instead of skipping what may be gigabytes of garbage.
    const decoder = new LengthPrefixedDecoder({
      headerSize: MUX_HEADER_SIZE,
      lengthOf: (h) => {
        const len = h.readUInt32BE(4);
        if (len > maxFrame) {
          throw new ProtocolError(
            "nri-mux",
            `frame for conn ${h.readUInt32BE(0)} announces ${len} bytes, over the ${maxFrame}-byte limit`,
          );
        }
        return len;
      },
      maxLength: maxFrame,
      onFrame: (h, payload) => this.route(h.readUInt32BE(0), payload),
      onOversized: () => {},
    });
    this.stopReading = readFrames(trunk, decoder, (err) => this.close(err));
  }

  get closed(): boolean {
    return this.closedWith !== null;
  }

  /** Opens logical connection `connId` (no signalling on the wire). */
  open(connId: number): MuxConn {
    if (!Number.isInteger(connId) || connId <= 0 || connId > 0xffffffff) {
      throw new RangeError(`mux conn id must be 1..2^32-1, got ${connId}`);
    }
    if (this.conns.has(connId)) throw new AlreadyExistsError(`nri mux connection ${connId} is already open`);
    const c = new MuxConn(this, connId);
    this.conns.set(connId, c);
    if (this.closedWith) c.destroy();
    return c;
  }

  /** @internal writes one message for `connId`. */
  send(connId: number, message: Buffer, cb: (err?: Error | null) => void): void {
    if (this.closedWith) {
      cb(new ClosedError("nri mux", { cause: this.closedWith }));
      return;
    }
    const frames = frameMessage(connId, message);
    if (frames.length === 0) {
      cb();
      return;
    }
    for (let i = 0; i < frames.length - 1; i++) this.trunk.write(frames[i]);
    this.trunk.write(frames[frames.length - 1], (err) => cb(err ?? null));
  }

  /** @internal */
  forget(connId: number, c: MuxConn): void {
    if (this.conns.get(connId) === c) this.conns.delete(connId);
  }

  /** Closes every logical connection and destroys the trunk. */
  close(err?: Error): void {
    if (this.closedWith) return;
    this.closedWith = err ?? new ClosedError("nri mux trunk");
    this.stopReading();
    if (err) this.log.warn({ err: err.message }, "nri mux: trunk closed with error");
    for (const c of [...this.conns.values()]) {
      c.push(null);
      c.destroy();
    }
    this.conns.clear();
    this.trunk.destroy();
    this.emit("close", err);
  }

  private route(connId: number, payload: Buffer): void {
    if (payload.length === 0) return;
    const c = this.conns.get(connId);
    if (!c) {
      this.log.debug({ connId, length: payload.length }, "nri mux: frame for unopened conn dropped");
      return;
    }
    c.deliver(payload);
  }
}
