// ttrpc client over one byte stream (a unix socket, or a logical NRI multiplexer connection).
// Unary calls only: each call allocates the next odd stream id (1, 3, 5, …), sends one Request and
// waits for the Response on that id. Calls may be pipelined; responses may arrive in any order.
import { EventEmitter } from "node:events";
import type { Duplex } from "node:stream";
import type { Logger } from "pino";
import { pino } from "pino";
import { ProtocolError } from "../errors.js";
import { Code, statusError } from "./codes.js";
import {
  encodeMessage,
  MAX_MESSAGE_SIZE,
  MessageDecoder,
  type MessageHeader,
  MessageType,
  readFrames,
} from "./framing.js";
import { decodeResponse, encodeRequest, type KeyValue } from "./proto.js";

interface TtrpcClientOptions {
  /** Largest Request data this client sends (default 4 MiB); larger calls fail with RESOURCE_EXHAUSTED. */
  maxSendMessageSize?: number;
  /** Largest Response data accepted (default 4 MiB); larger ones fail their call with RESOURCE_EXHAUSTED. */
  maxRecvMessageSize?: number;
  log?: Logger;
}

interface CallOptions {
  /** Deadline for the call; sent as timeout_nano and enforced locally (DEADLINE_EXCEEDED). */
  timeoutMs?: number;
  metadata?: KeyValue[];
  signal?: AbortSignal;
}

interface Pending {
  resolve(payload: Uint8Array): void;
  reject(err: Error): void;
  what: string;
}

type ClientEvents = { close: [err: Error | undefined] };

export class TtrpcClient extends EventEmitter<ClientEvents> {
  private readonly stream: Duplex;
  private readonly log: Logger;
  private readonly maxSend: number;
  private readonly stopReading: () => void;
  private readonly pending = new Map<number, Pending>();
  private nextStreamId = 1;
  private closedWith: Error | null = null;

  constructor(stream: Duplex, opts: TtrpcClientOptions = {}) {
    super();
    this.stream = stream;
    this.log = opts.log ?? pino({ level: "silent" });
    this.maxSend = opts.maxSendMessageSize ?? MAX_MESSAGE_SIZE;
    const decoder = new MessageDecoder({
      maxMessageSize: opts.maxRecvMessageSize ?? MAX_MESSAGE_SIZE,
      onMessage: (h, data) => this.handleMessage(h, data),
      onOversized: (h) => {
        const p = h.type === MessageType.RESPONSE ? this.take(h.streamId) : undefined;
        const detail = `response on stream ${h.streamId} is ${h.length} bytes, over the limit; discarded`;
        this.log.warn(
          { streamId: h.streamId, length: h.length },
          "ttrpc client: oversized message discarded",
        );
        p?.reject(statusError(Code.RESOURCE_EXHAUSTED, `${p.what}: ${detail}`));
      },
    });
    this.stopReading = readFrames(stream, decoder, (err) => this.shutdown(err));
  }

  get closed(): boolean {
    return this.closedWith !== null;
  }

  /** Number of calls waiting for a response. */
  get inFlight(): number {
    return this.pending.size;
  }

  /**
   * Calls `service/method` with an already serialized request; resolves with the serialized
   * response (empty for an empty message). Rejects with TtrpcError: the peer's status, or
   * DEADLINE_EXCEEDED, CANCELLED, RESOURCE_EXHAUSTED, UNAVAILABLE (connection gone).
   */
  call(service: string, method: string, payload: Uint8Array, opts: CallOptions = {}): Promise<Uint8Array> {
    const what = `${service}/${method}`;
    if (this.closedWith) {
      return Promise.reject(
        statusError(Code.UNAVAILABLE, `${what}: connection closed`, { cause: this.closedWith }),
      );
    }
    if (opts.signal?.aborted) return Promise.reject(statusError(Code.CANCELLED, `${what}: aborted`));
    const timeoutMs = opts.timeoutMs ?? 0;
    const data = encodeRequest({
      service,
      method,
      payload,
      timeoutNano: timeoutMs > 0 ? Math.round(timeoutMs * 1e6) : 0,
      metadata: opts.metadata ?? [],
    });
    if (data.length > this.maxSend) {
      return Promise.reject(
        statusError(
          Code.RESOURCE_EXHAUSTED,
          `${what}: request of ${data.length} bytes exceeds the maximum message size ${this.maxSend}`,
        ),
      );
    }
    const streamId = this.nextStreamId;
    if (streamId > 0xffffffff) {
      return Promise.reject(statusError(Code.UNAVAILABLE, `${what}: stream ids exhausted; reconnect`));
    }
    this.nextStreamId += 2;

    return new Promise<Uint8Array>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = () => {
        if (this.take(streamId)) reject(statusError(Code.CANCELLED, `${what}: aborted`));
      };
      const done = () => {
        if (timer) clearTimeout(timer);
        opts.signal?.removeEventListener("abort", onAbort);
      };
      this.pending.set(streamId, {
        what,
        resolve: (p) => {
          done();
          resolve(p);
        },
        reject: (e) => {
          done();
          reject(e);
        },
      });
      if (timeoutMs > 0) {
        timer = setTimeout(() => {
          const p = this.take(streamId);
          p?.reject(statusError(Code.DEADLINE_EXCEEDED, `${what}: no response within ${timeoutMs} ms`));
        }, timeoutMs);
      }
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      // One write per message: the NRI multiplexer frames each write on its own.
      this.stream.write(encodeMessage(streamId, MessageType.REQUEST, 0, data));
    });
  }

  /** Fails every pending call with UNAVAILABLE and stops reading; does not end the stream. */
  close(err?: Error): void {
    this.shutdown(err);
  }

  private take(streamId: number): Pending | undefined {
    const p = this.pending.get(streamId);
    if (p) this.pending.delete(streamId);
    return p;
  }

  private handleMessage(h: MessageHeader, data: Buffer): void {
    if (h.type !== MessageType.RESPONSE) {
      // Requests and stream data are never sent to a unary client; like Go, ignore them.
      this.log.debug({ type: h.type, streamId: h.streamId }, "ttrpc client: ignoring unexpected message");
      return;
    }
    const p = this.take(h.streamId);
    if (!p) {
      // Late answer to a call that already timed out or was cancelled.
      this.log.debug({ streamId: h.streamId }, "ttrpc client: response for unknown stream ignored");
      return;
    }
    let res: ReturnType<typeof decodeResponse>;
    try {
      res = decodeResponse(data);
    } catch (e) {
      p.reject(
        statusError(Code.INTERNAL, `${p.what}: undecodable response`, {
          cause: new ProtocolError("ttrpc", String(e)),
        }),
      );
      return;
    }
    if (res.status && res.status.code !== Code.OK) {
      p.reject(statusError(res.status.code, `${p.what}: ${res.status.message}`));
      return;
    }
    p.resolve(res.payload);
  }

  private shutdown(err: Error | undefined): void {
    if (this.closedWith) return;
    this.closedWith = err ?? new Error("connection closed");
    this.stopReading();
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) {
      p.reject(
        statusError(Code.UNAVAILABLE, `${p.what}: connection closed${err ? `: ${err.message}` : ""}`, {
          cause: err,
        }),
      );
    }
    this.emit("close", err);
  }
}
