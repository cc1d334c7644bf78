// ttrpc server: dispatches unary Requests to registered method handlers and answers on the same
// stream id. Handlers run concurrently, so a slow handler never holds up other requests on the
// connection. A request's timeout_nano becomes the handler's deadline: when it passes, the server
// answers DEADLINE_EXCEEDED itself (optionally `deadlineMarginMs` early, so the reply reaches a
// caller that enforces the same deadline) and aborts the handler's signal; a later result is dropped.
import { EventEmitter } from "node:events";
import type { Duplex } from "node:stream";
import type { Logger } from "pino";
import { pino } from "pino";
import { TtrpcError } from "../errors.js";
import { Code } from "./codes.js";
import {
  encodeMessage,
  MAX_MESSAGE_SIZE,
  MessageDecoder,
  type MessageHeader,
  MessageType,
  readFrames,
} from "./framing.js";
import { decodeRequest, encodeResponse, type KeyValue } from "./proto.js";

export interface TtrpcCall {
  service: string;
  method: string;
  streamId: number;
  metadata: readonly KeyValue[];
  /** Absolute deadline (Date.now() scale) from timeout_nano, or undefined when the caller set none. */
  deadline: number | undefined;
  /** Aborted when the deadline passes or the connection closes. */
  signal: AbortSignal;
}

/** Returns the serialized response message (an empty array for an empty message). */
type TtrpcMethod = (payload: Uint8Array, call: TtrpcCall) => Uint8Array | Promise<Uint8Array>;

interface TtrpcServerOptions {
  maxSendMessageSize?: number;
  maxRecvMessageSize?: number;
  /** Answer DEADLINE_EXCEEDED this many ms before the caller's deadline (default 0). */
  deadlineMarginMs?: number;
  log?: Logger;
}

interface TtrpcServerConnectionEvents {
  close: [err: Error | undefined];
  /** A handler finished after its deadline had already been answered. */
  late: [call: TtrpcCall, elapsedMs: number];
}

export class TtrpcServer {
  private readonly services = new Map<string, Map<string, TtrpcMethod>>();
  readonly opts: TtrpcServerOptions;

  constructor(opts: TtrpcServerOptions = {}) {
    this.opts = opts;
  }

  /** Registers the methods of `service` (full name, e.g. `nri.pkg.api.v1alpha1.Plugin`). */
  register(service: string, methods: Record<string, TtrpcMethod>): this {
    const m = this.services.get(service) ?? new Map<string, TtrpcMethod>();
    for (const [name, fn] of Object.entries(methods)) m.set(name, fn);
    this.services.set(service, m);
    return this;
  }

  lookup(service: string, method: string): TtrpcMethod | undefined {
    return this.services.get(service)?.get(method);
  }

  /** Serves requests arriving on `stream` until it closes. */
  serve(stream: Duplex): TtrpcServerConnection {
    return new TtrpcServerConnection(this, stream, this.opts);
  }
}

interface InFlight {
  abort: AbortController;
  timer: NodeJS.Timeout | undefined;
  answered: boolean;
  closedEarly: boolean;
}

class TtrpcServerConnection extends EventEmitter<TtrpcServerConnectionEvents> {
  private readonly server: TtrpcServer;
  private readonly stream: Duplex;
  private readonly log: Logger;
  private readonly maxSend: number;
  private readonly margin: number;
  private readonly stopReading: () => void;
  private readonly inflight = new Map<number, InFlight>();
  private lastStreamId = 0;
  private closed = false;

  constructor(server: TtrpcServer, stream: Duplex, opts: TtrpcServerOptions) {
    super();
    this.server = server;
    this.stream = stream;
    this.log = opts.log ?? pino({ level: "silent" });
    this.maxSend = opts.maxSendMessageSize ?? MAX_MESSAGE_SIZE;
    this.margin = opts.deadlineMarginMs ?? 0;
    const decoder = new MessageDecoder({
      maxMessageSize: opts.maxRecvMessageSize ?? MAX_MESSAGE_SIZE,
      onMessage: (h, data) => this.handleMessage(h, data),
      onOversized: (h) => {
        this.log.warn(
          { streamId: h.streamId, length: h.length },
          "ttrpc server: oversized message discarded",
        );
        if (h.type === MessageType.REQUEST && this.acceptStreamId(h.streamId)) {
          this.sendStatus(
            h.streamId,
            Code.RESOURCE_EXHAUSTED,
            `message length ${h.length} exceeds maximum message size of ${opts.maxRecvMessageSize ?? MAX_MESSAGE_SIZE}`,
          );
        }
      },
    });
    this.stopReading = readFrames(stream, decoder, (err) => this.shutdown(err));
  }

  get activeRequests(): number {
    return this.inflight.size;
  }

  /** Stops serving: aborts every handler in flight. Does not end the stream. */
  close(err?: Error): void {
    this.shutdown(err);
  }

  private acceptStreamId(streamId: number): boolean {
    if (streamId % 2 !== 1) {
      this.sendStatus(streamId, Code.INVALID_ARGUMENT, "StreamID must be odd for client initiated streams");
      return false;
    }
    if (streamId <= this.lastStreamId) {
      this.sendStatus(streamId, Code.INVALID_ARGUMENT, "StreamID cannot be re-used and must increment");
      return false;
    }
    this.lastStreamId = streamId;
    return true;
  }

  private handleMessage(h: MessageHeader, data: Buffer): void {
    if (this.closed) return;
    if (h.type !== MessageType.REQUEST) {
      // No streaming in this implementation: Data and stray Responses are ignored, like unknown types.
      this.log.debug({ type: h.type, streamId: h.streamId }, "ttrpc server: ignoring non-request message");
      return;
    }
    if (!this.acceptStreamId(h.streamId)) return;
    let req: ReturnType<typeof decodeRequest>;
    try {
      req = decodeRequest(data);
    } catch (e) {
      this.sendStatus(h.streamId, Code.INVALID_ARGUMENT, `unmarshal request error: ${String(e)}`);
      return;
    }
    const fn = this.server.lookup(req.service, req.method);
    if (!fn) {
      this.sendStatus(h.streamId, Code.UNIMPLEMENTED, `${req.service}/${req.method} is not implemented`);
      return;
    }
    const started = Date.now();
    const timeoutMs = req.timeoutNano > 0 ? req.timeoutNano / 1e6 : 0;
    const abort = new AbortController();
    const call: TtrpcCall = {
      service: req.service,
      method: req.method,
      streamId: h.streamId,
      metadata: req.metadata,
      deadline: timeoutMs > 0 ? started + timeoutMs : undefined,
      signal: abort.signal,
    };
    const entry: InFlight = { abort, timer: undefined, answered: false, closedEarly: false };
    this.inflight.set(h.streamId, entry);
    if (timeoutMs > 0) {
      const budget = Math.max(0, timeoutMs - this.margin);
      entry.timer = setTimeout(() => {
        if (entry.answered) return;
        entry.answered = true;
        this.inflight.delete(h.streamId);
        this.log.error(
          { service: req.service, method: req.method, streamId: h.streamId, budgetMs: Math.round(budget) },
          "ttrpc server: handler exceeded the caller's deadline; answered DEADLINE_EXCEEDED",
        );
        this.sendStatus(
          h.streamId,
          Code.DEADLINE_EXCEEDED,
          `${req.method}: handler did not finish within ${Math.round(budget)} ms`,
        );
        abort.abort(new TtrpcError(Code.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED", "deadline exceeded"));
      }, budget);
    }
    const finish = (fnResult: { ok: true; payload: Uint8Array } | { ok: false; err: unknown }) => {
      if (entry.timer) clearTimeout(entry.timer);
      this.inflight.delete(h.streamId);
      if (entry.closedEarly) return;
      if (entry.answered) {
        const elapsed = Date.now() - started;
        this.log.error(
          { service: req.service, method: req.method, elapsedMs: elapsed },
          "ttrpc server: handler finished after its deadline; result dropped",
        );
        this.emit("late", call, elapsed);
        return;
      }
      entry.answered = true;
      if (fnResult.ok) {
        this.sendResponse(h.streamId, fnResult.payload);
      } else {
        const { code, message } = errorToStatus(fnResult.err);
        this.sendStatus(h.streamId, code, message);
      }
    };
    try {
      const out = fn(req.payload, call);
      if (out instanceof Uint8Array) finish({ ok: true, payload: out });
      else
        out.then(
          (payload) => finish({ ok: true, payload }),
          (err: unknown) => finish({ ok: false, err }),
        );
    } catch (err) {
      finish({ ok: false, err });
    }
  }

  private sendResponse(streamId: number, payload: Uint8Array): void {
    const data = encodeResponse({ status: undefined, payload });
    if (data.length > this.maxSend) {
      this.sendStatus(
        streamId,
        Code.RESOURCE_EXHAUSTED,
        `response of ${data.length} bytes exceeds the maximum message size ${this.maxSend}`,
      );
      return;
    }
    this.write(streamId, data);
  }

  private sendStatus(streamId: number, code: number, message: string): void {
    this.write(streamId, encodeResponse({ status: { code, message }, payload: new Uint8Array(0) }));
  }

  private write(streamId: number, data: Uint8Array): void {
    if (this.closed || this.stream.destroyed || this.stream.writableEnded) return;
    this.stream.write(encodeMessage(streamId, MessageType.RESPONSE, 0, data));
  }

  private shutdown(err: Error | undefined): void {
    if (this.closed) return;
    this.closed = true;
    this.stopReading();
    for (const e of this.inflight.values()) {
      if (e.timer) clearTimeout(e.timer);
      e.answered = true;
      e.closedEarly = true;
      e.abort.abort(err ?? new Error("connection closed"));
    }
    this.inflight.clear();
    this.emit("close", err);
  }
}

/** TtrpcError keeps its status code; anything else becomes UNKNOWN, as Go does for plain errors. */
function errorToStatus(err: unknown): { code: number; message: string } {
  if (err instanceof TtrpcError) return { code: err.status, message: err.detail };
  if (err instanceof Error) return { code: Code.UNKNOWN, message: err.message };
  return { code: Code.UNKNOWN, message: String(err) };
}
