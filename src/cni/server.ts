// nkitd's CNI endpoint: a unix socket serving nkit-cni, one request per connection, framed and
// encoded as protocol.ts describes. It owns no behaviour: a CniHandler does the work.
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  unlinkSync,
} from "node:fs";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { dirname, join } from "node:path";
import { AlreadyExistsError, InvalidArgumentError } from "../errors.js";
import type { Logger } from "../log.js";
import { CniCode, CniError, errorJson, toCniError } from "./codes.js";
import type { CniHandler } from "./handler.js";
import {
  type CniRequest,
  type CniResponse,
  DEL_QUEUE_DIR,
  MAX_REQUEST_BYTES,
  parseRequest,
  versionOf,
} from "./protocol.js";

export interface CniServerOptions {
  socketPath: string;
  handler: CniHandler;
  log?: Logger;
  /** Socket file mode: 0o600 (root only) by default; 0o660 with `gid` for a group. */
  mode?: number;
  gid?: number;
  /** A connection must deliver its request within this time (default 10 s). */
  requestTimeoutMs?: number;
  /** Told each answered request's command, time taken and outcome (nkitd records them as metrics). */
  observe?: (command: string, seconds: number, ok: boolean) => void;
}

const QUEUE_FILE_RE = /^del-[0-9a-f]{16}\.json$/;
const QUEUE_RETRY_MS = 30_000;

async function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection(path);
    c.once("connect", () => {
      c.destroy();
      resolve(true);
    });
    c.once("error", () => resolve(false));
  });
}

/** A server listening on o.socketPath with the configured mode and group. */
async function listenOn(o: CniServerOptions, onConnection: (sock: Socket) => void): Promise<Server> {
  const server = createServer({ allowHalfOpen: true });
  server.on("connection", onConnection);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(o.socketPath, () => {
      server.off("error", reject);
      resolve();
    });
  });
  try {
    if (o.gid !== undefined) chownSync(o.socketPath, process.getuid?.() ?? 0, o.gid);
    chmodSync(o.socketPath, o.mode ?? (o.gid !== undefined ? 0o660 : 0o600));
  } catch (e) {
    server.close();
    throw e;
  }
  server.on("error", (e) => o.log?.error({ err: e }, "CNI endpoint error"));
  return server;
}

export class CniServer {
  readonly socketPath: string;
  /** Where nkit-cni queues DELs while nkitd is unreachable. */
  readonly queueDir: string;
  private readonly inflight = new Set<Promise<void>>();
  private readonly sockets = new Set<Socket>();
  private readonly queueFailures = new Map<string, number>();
  private draining: Promise<void> | undefined;
  private closed = false;

  private server: Server | undefined;

  private constructor(private readonly opts: CniServerOptions) {
    this.socketPath = opts.socketPath;
    this.queueDir = join(dirname(opts.socketPath), DEL_QUEUE_DIR);
  }

  /**
   * Replays queued DELs, removes a stale socket file (refusing when another process still answers
   * on it, or when the path is not a socket) and listens.
   */
  static async start(o: CniServerOptions): Promise<CniServer> {
    const s = new CniServer(o);
    await s.drainQueue();
    let st: ReturnType<typeof lstatSync> | undefined;
    try {
      st = lstatSync(o.socketPath);
    } catch {
      st = undefined;
    }
    if (st) {
      if (!st.isSocket()) {
        throw new InvalidArgumentError(
          `CNI socket path ${o.socketPath} exists and is not a socket; remove it or choose another paths.run`,
        );
      }
      if (await socketAnswers(o.socketPath)) {
        throw new AlreadyExistsError(
          `another process already serves the CNI endpoint on ${o.socketPath}; stop it first`,
        );
      }
      unlinkSync(o.socketPath);
    }
    s.server = await listenOn(o, (sock) => s.onConnection(sock));
    o.log?.info({ socket: o.socketPath }, "CNI endpoint listening");
    return s;
  }

  /**
   * Listens again when the socket file is gone (removed by hand, or the run dir with it, which is
   * made again): without it no pod could be wired. True when it listened anew.
   */
  async ensureListening(): Promise<boolean> {
    if (this.closed || !this.server || existsSync(this.socketPath)) return false;
    mkdirSync(dirname(this.socketPath), { recursive: true, mode: 0o755 });
    // Closing a unix socket server unlinks its path: the old one goes first, or it would take the
    // new socket's file with it.
    const old = this.server;
    await new Promise<void>((resolve) => old.close(() => resolve()));
    this.server = await listenOn(this.opts, (sock) => this.onConnection(sock));
    return true;
  }

  /** Stops accepting, waits for requests in progress, removes the socket file. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const server = this.server;
    const stopped = new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await Promise.allSettled([...this.inflight]);
    for (const s of this.sockets) s.destroy();
    await stopped;
    rmSync(this.socketPath, { force: true });
  }

  private onConnection(sock: Socket): void {
    this.sockets.add(sock);
    sock.once("close", () => this.sockets.delete(sock));
    sock.on("error", (e) => this.opts.log?.debug({ err: e }, "CNI connection error"));
    sock.setTimeout(this.opts.requestTimeoutMs ?? 10_000, () => sock.destroy());
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const finish = (line: string | undefined) => {
      done = true;
      sock.setTimeout(0);
      const p = this.serve(line).then((resp) => {
        // One request per connection: once the answer is flushed the connection is done, whatever
        // the client still sends or whether it half-closed.
        if (!sock.destroyed) sock.end(`${JSON.stringify(resp)}\n`, () => sock.destroy());
      });
      this.inflight.add(p);
      void p.finally(() => this.inflight.delete(p));
    };
    sock.on("data", (d: Buffer) => {
      if (done) return; // anything after the request line is ignored
      const nl = d.indexOf(10);
      const part = nl >= 0 ? d.subarray(0, nl) : d;
      size += part.length;
      chunks.push(part);
      if (size > MAX_REQUEST_BYTES) return finish(undefined);
      if (nl >= 0) finish(Buffer.concat(chunks).toString("utf8"));
    });
    sock.on("end", () => {
      if (done) return;
      if (size === 0) {
        done = true;
        sock.end();
        return;
      }
      finish(Buffer.concat(chunks).toString("utf8"));
    });
  }

  /** One request line to one response; never throws. */
  private async serve(line: string | undefined): Promise<CniResponse> {
    const started = performance.now();
    let raw: unknown;
    let req: CniRequest | undefined;
    try {
      if (line === undefined) {
        throw new CniError(CniCode.PROTOCOL, `request larger than ${MAX_REQUEST_BYTES} bytes`);
      }
      try {
        raw = JSON.parse(line);
      } catch {
        raw = undefined;
      }
      req = parseRequest(line);
      if (this.closed) throw new CniError(CniCode.TRY_AGAIN, "nkitd is shutting down", "retry shortly");
      await this.drainQueue();
      const result = await this.dispatch(req);
      const ms = performance.now() - started;
      this.opts.observe?.(req.command, ms / 1000, true);
      this.opts.log?.debug(
        { command: req.command, containerId: req.containerId, ms: +ms.toFixed(2) },
        "CNI request",
      );
      return result ? { ok: true, result } : { ok: true };
    } catch (e) {
      if (req) this.opts.observe?.(req.command, (performance.now() - started) / 1000, false);
      const err = toCniError(e);
      this.opts.log?.[err.cniCode === CniCode.INTERNAL ? "error" : "warn"](
        {
          command: req?.command,
          containerId: req?.containerId,
          code: err.cniCode,
          err: err.cniCode === CniCode.INTERNAL ? e : undefined,
        },
        `CNI request failed: ${err.message}`,
      );
      return { ok: false, error: errorJson(err, versionOf(raw)) };
    }
  }

  private async dispatch(req: CniRequest) {
    const h = this.opts.handler;
    switch (req.command) {
      case "ADD":
        return h.add(req);
      case "DEL":
        return h.del(req);
      case "CHECK":
        return h.check(req);
      case "STATUS":
        return h.status(req);
      case "GC":
        return h.gc(req);
    }
  }

  /**
   * Replays DELs nkit-cni queued while nkitd was unreachable. Runs at start and before every
   * request, so a queued DEL precedes any later ADD of the same container. A failing entry stays
   * queued and is retried at most every 30 s.
   */
  drainQueue(): Promise<void> {
    if (!existsSync(this.queueDir)) return Promise.resolve();
    this.draining ??= this.drainOnce().finally(() => {
      this.draining = undefined;
    });
    return this.draining;
  }

  private async drainOnce(): Promise<void> {
    let names: string[];
    try {
      names = readdirSync(this.queueDir).filter((n) => QUEUE_FILE_RE.test(n));
    } catch {
      return;
    }
    for (const name of names) {
      const path = join(this.queueDir, name);
      const lastFailure = this.queueFailures.get(name);
      if (lastFailure !== undefined && Date.now() - lastFailure < QUEUE_RETRY_MS) continue;
      let req: CniRequest;
      try {
        req = parseRequest(readFileSync(path, "utf8").trim());
        if (req.command !== "DEL") throw new CniError(CniCode.PROTOCOL, `queued ${req.command}, not DEL`);
      } catch (e) {
        this.opts.log?.warn({ err: e, path }, "discarding an unreadable queued CNI DEL");
        rmSync(path, { force: true });
        continue;
      }
      try {
        await this.opts.handler.del(req);
        rmSync(path, { force: true });
        this.queueFailures.delete(name);
        this.opts.log?.info(
          { containerId: req.containerId, ifName: req.ifName },
          "replayed a queued CNI DEL",
        );
      } catch (e) {
        this.queueFailures.set(name, Date.now());
        this.opts.log?.warn(
          { err: e, path, containerId: req.containerId },
          "queued CNI DEL failed; will retry",
        );
      }
    }
  }
}
