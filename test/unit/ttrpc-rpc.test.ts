// ttrpc client <-> server over a real unix socket.
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { TtrpcError } from "../../src/errors.js";
import { TtrpcClient } from "../../src/ttrpc/client.js";
import { Code } from "../../src/ttrpc/codes.js";
import { encodeMessage, MessageDecoder, type MessageHeader, MessageType } from "../../src/ttrpc/framing.js";
import { decodeResponse, encodeRequest } from "../../src/ttrpc/proto.js";
import { TtrpcServer } from "../../src/ttrpc/server.js";

const SVC = "test.v1.Echo";
let dir: string;
let srv: net.Server | undefined;
const sockets: net.Socket[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "nkit-ttrpc-"));
});
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await new Promise<void>((r) => (srv ? srv.close(() => r()) : r()));
  srv = undefined;
  rmSync(dir, { recursive: true, force: true });
});

/** A connected pair of unix sockets: [server side, client side]. */
async function socketPair(onServer?: (s: net.Socket) => void): Promise<[net.Socket, net.Socket]> {
  const path = join(dir, `s${sockets.length}.sock`);
  const server = net.createServer();
  srv = server;
  const accepted = new Promise<net.Socket>((r) => server.once("connection", r));
  await new Promise<void>((r) => server.listen(path, r));
  const client = net.createConnection(path);
  const s = await accepted;
  onServer?.(s);
  await new Promise<void>((r) => (client.connecting ? client.once("connect", () => r()) : r()));
  sockets.push(s, client);
  return [s, client];
}

function echoServer(opts: ConstructorParameters<typeof TtrpcServer>[0] = {}) {
  const calls: string[] = [];
  const server = new TtrpcServer(opts).register(SVC, {
    Echo: (p, call) => {
      calls.push(`Echo:${call.streamId}`);
      return p;
    },
    Empty: () => new Uint8Array(0),
    Fail: () => {
      throw new Error("refusing this one");
    },
    FailCode: () => {
      throw new TtrpcError(Code.PERMISSION_DENIED, "PERMISSION_DENIED", "not allowed");
    },
    Slow: (_p, call) =>
      new Promise<Uint8Array>((resolve) => {
        const t = setTimeout(() => resolve(Buffer.from("late")), 2000);
        call.signal.addEventListener("abort", () => clearTimeout(t));
      }),
    Delay: (p) => new Promise<Uint8Array>((resolve) => setTimeout(() => resolve(p), Number(p.toString()))),
    Meta: (_p, call) =>
      Buffer.from(JSON.stringify({ md: call.metadata, deadline: call.deadline !== undefined })),
  });
  return { server, calls };
}

async function expectCode(p: Promise<unknown>, code: number, re?: RegExp): Promise<TtrpcError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TtrpcError);
  const te = err as TtrpcError;
  expect(te.status).toBe(code);
  expect(te.code).toBe("NKIT_TTRPC");
  if (re) expect(te.message).toMatch(re);
  return te;
}

/** Raw peer: reads ttrpc messages off a socket. */
function rawReader(sock: net.Socket) {
  const msgs: { h: MessageHeader; data: Buffer }[] = [];
  const waiters: (() => void)[] = [];
  const dec = new MessageDecoder({
    onMessage: (h, data) => {
      msgs.push({ h, data });
      for (const w of waiters.splice(0)) w();
    },
    onOversized: () => {},
  });
  sock.on("data", (c: Buffer) => dec.push(c));
  return {
    msgs,
    async next(n: number) {
      while (msgs.length < n) await new Promise<void>((r) => waiters.push(r));
      return msgs;
    },
  };
}

describe("ttrpc client/server", () => {
  it("round-trips, pipelines with odd increasing stream ids, answers out of order", async () => {
    const { server, calls } = echoServer();
    const [s, c] = await socketPair();
    server.serve(s);
    const client = new TtrpcClient(c);
    const slow = client.call(SVC, "Delay", Buffer.from("60"));
    const fast = client.call(SVC, "Echo", Buffer.from("hello"));
    const big = client.call(SVC, "Echo", Buffer.alloc(100_000, 7));
    expect(Buffer.from(await fast).toString()).toBe("hello");
    expect((await big).length).toBe(100_000);
    expect(Buffer.from(await slow).toString()).toBe("60");
    expect(calls).toEqual(["Echo:3", "Echo:5"]);
    expect(client.inFlight).toBe(0);
  });

  it("sends an OK with an empty result as a zero-length response", async () => {
    const { server } = echoServer();
    const [s, c] = await socketPair();
    server.serve(s);
    const raw = rawReader(c);
    c.write(encodeMessage(1, MessageType.REQUEST, 0, encodeRequest(req("Empty"))));
    const [m] = await raw.next(1);
    expect(m?.h).toEqual({ length: 0, streamId: 1, type: MessageType.RESPONSE, flags: 0 });
    const [s2, c2] = await socketPair();
    server.serve(s2);
    const client = new TtrpcClient(c2);
    expect((await client.call(SVC, "Empty", new Uint8Array(0))).length).toBe(0);
  });

  it("answers UNIMPLEMENTED for unknown methods and services", async () => {
    const { server } = echoServer();
    const [s, c] = await socketPair();
    server.serve(s);
    const client = new TtrpcClient(c);
    await expectCode(client.call(SVC, "Nope", new Uint8Array(0)), Code.UNIMPLEMENTED, /test\.v1\.Echo\/Nope/);
    await expectCode(client.call("other.Svc", "Echo", new Uint8Array(0)), Code.UNIMPLEMENTED);
    // the connection is still fine
    expect(Buffer.from(await client.call(SVC, "Echo", Buffer.from("x"))).toString()).toBe("x");
  });

  it("turns handler errors into status responses", async () => {
    const { server } = echoServer();
    const [s, c] = await socketPair();
    server.serve(s);
    const client = new TtrpcClient(c);
    await expectCode(client.call(SVC, "Fail", new Uint8Array(0)), Code.UNKNOWN, /refusing this one/);
    await expectCode(client.call(SVC, "FailCode", new Uint8Array(0)), Code.PERMISSION_DENIED, /not allowed/);
  });

  it("server honours timeout_nano: answers DEADLINE_EXCEEDED and aborts the handler", async () => {
    const { server } = echoServer({ deadlineMarginMs: 50 });
    const [s, c] = await socketPair();
    const conn = server.serve(s);
    const client = new TtrpcClient(c);
    const t0 = Date.now();
    // the client's own deadline is later than the server's answer (margin 50 ms)
    const err = await expectCode(
      client.call(SVC, "Slow", new Uint8Array(0), { timeoutMs: 300 }),
      Code.DEADLINE_EXCEEDED,
    );
    expect(err.message).toMatch(/did not finish within 250 ms/);
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(conn.activeRequests).toBe(0);
    // other work is not blocked while a handler is slow
    const slow = client.call(SVC, "Slow", new Uint8Array(0), { timeoutMs: 500 }).catch((e: unknown) => e);
    expect(Buffer.from(await client.call(SVC, "Echo", Buffer.from("ok"))).toString()).toBe("ok");
    expect(await slow).toBeInstanceOf(TtrpcError);
  });

  it("client honours its own deadline when the server never answers", async () => {
    const [, c] = await socketPair(); // nothing serves the other end
    const client = new TtrpcClient(c);
    const t0 = Date.now();
    await expectCode(
      client.call(SVC, "Echo", new Uint8Array(0), { timeoutMs: 80 }),
      Code.DEADLINE_EXCEEDED,
      /80 ms/,
    );
    expect(Date.now() - t0).toBeGreaterThanOrEqual(75);
    expect(client.inFlight).toBe(0);
  });

  it("passes metadata and the deadline to handlers", async () => {
    const { server } = echoServer();
    const [s, c] = await socketPair();
    server.serve(s);
    const client = new TtrpcClient(c);
    const out = await client.call(SVC, "Meta", new Uint8Array(0), {
      timeoutMs: 1000,
      metadata: [{ key: "containerd-namespace-ttrpc", value: "k8s.io" }],
    });
    expect(JSON.parse(Buffer.from(out).toString())).toEqual({
      md: [{ key: "containerd-namespace-ttrpc", value: "k8s.io" }],
      deadline: true,
    });
  });

  it("enforces the max message size on both sides with clean errors", async () => {
    const { server } = echoServer({ maxRecvMessageSize: 2048 });
    const [s, c] = await socketPair();
    server.serve(s);
    // receiver rejects: RESOURCE_EXHAUSTED on that stream, connection keeps working
    const client = new TtrpcClient(c);
    await expectCode(
      client.call(SVC, "Echo", Buffer.alloc(4000)),
      Code.RESOURCE_EXHAUSTED,
      /exceeds maximum/,
    );
    expect(Buffer.from(await client.call(SVC, "Echo", Buffer.from("after"))).toString()).toBe("after");
    // sender refuses
    const small = new TtrpcClient((await socketPair())[1], { maxSendMessageSize: 100 });
    await expectCode(
      small.call(SVC, "Echo", Buffer.alloc(200)),
      Code.RESOURCE_EXHAUSTED,
      /exceeds the maximum/,
    );
    // default limit is 4 MiB
    await expectCode(client.call(SVC, "Echo", Buffer.alloc(4 << 20)), Code.RESOURCE_EXHAUSTED);
  });

  it("client rejects oversized responses and keeps going", async () => {
    const { server } = echoServer();
    const [s, c] = await socketPair();
    server.serve(s);
    const client = new TtrpcClient(c, { maxRecvMessageSize: 1000 });
    await expectCode(client.call(SVC, "Echo", Buffer.alloc(5000)), Code.RESOURCE_EXHAUSTED, /discarded/);
    expect(Buffer.from(await client.call(SVC, "Echo", Buffer.from("y"))).toString()).toBe("y");
  });

  it("rejects even and non-increasing stream ids like Go's server", async () => {
    const { server } = echoServer();
    const [s, c] = await socketPair();
    server.serve(s);
    const raw = rawReader(c);
    const body = encodeRequest(req("Echo"));
    c.write(encodeMessage(2, MessageType.REQUEST, 0, body));
    c.write(encodeMessage(5, MessageType.REQUEST, 0, body));
    c.write(encodeMessage(3, MessageType.REQUEST, 0, body));
    c.write(encodeMessage(5, MessageType.REQUEST, 0, body));
    const msgs = await raw.next(4);
    const st = msgs.map((m) => [m.h.streamId, decodeResponse(m.data).status?.code ?? 0]);
    expect(st).toEqual([
      [2, Code.INVALID_ARGUMENT],
      [5, 0],
      [3, Code.INVALID_ARGUMENT],
      [5, Code.INVALID_ARGUMENT],
    ]);
    expect(decodeResponse(msgs[0]!.data).status?.message).toMatch(/must be odd/);
    expect(decodeResponse(msgs[2]!.data).status?.message).toMatch(/must increment/);
  });

  it("ignores unknown message types and data messages; answers undecodable requests", async () => {
    const { server } = echoServer();
    const [s, c] = await socketPair();
    server.serve(s);
    const raw = rawReader(c);
    c.write(encodeMessage(1, 9, 0, Buffer.from("junk")));
    c.write(encodeMessage(1, MessageType.DATA, 1, Buffer.from("junk")));
    c.write(encodeMessage(3, MessageType.REQUEST, 0, Buffer.from([0xff, 0xff, 0xff])));
    c.write(encodeMessage(5, MessageType.REQUEST, 0, encodeRequest(req("Echo", "z"))));
    const msgs = await raw.next(2);
    expect(msgs[0]?.h.streamId).toBe(3);
    expect(decodeResponse(msgs[0]!.data).status?.code).toBe(Code.INVALID_ARGUMENT);
    expect(msgs[1]?.h.streamId).toBe(5);
    expect(Buffer.from(decodeResponse(msgs[1]!.data).payload).toString()).toBe("z");
  });

  it("client survives garbage responses and unknown stream ids", async () => {
    let serverSock: net.Socket | undefined;
    const [, c] = await socketPair((s) => {
      serverSock = s;
    });
    const client = new TtrpcClient(c);
    const p = client.call(SVC, "Echo", new Uint8Array(0));
    serverSock!.write(encodeMessage(99, MessageType.RESPONSE, 0, Buffer.alloc(0))); // unknown id: ignored
    serverSock!.write(encodeMessage(1, MessageType.RESPONSE, 0, Buffer.from([0x0a, 0xff]))); // truncated
    await expectCode(p, Code.INTERNAL, /undecodable/);
  });

  it("fails pending calls with UNAVAILABLE when the connection closes, and later calls too", async () => {
    let serverSock: net.Socket | undefined;
    const [, c] = await socketPair((s) => {
      serverSock = s;
    });
    const client = new TtrpcClient(c);
    const closed = new Promise((r) => client.once("close", r));
    const p = client.call(SVC, "Echo", new Uint8Array(0));
    serverSock!.destroy();
    await expectCode(p, Code.UNAVAILABLE, /connection closed/);
    await closed;
    await expectCode(client.call(SVC, "Echo", new Uint8Array(0)), Code.UNAVAILABLE);
  });

  it("aborts handlers when the connection drops", async () => {
    let aborted = false;
    const server = new TtrpcServer().register(SVC, {
      Hang: (_p, call) =>
        new Promise<Uint8Array>(() => {
          call.signal.addEventListener("abort", () => {
            aborted = true;
          });
        }),
    });
    const [s, c] = await socketPair();
    const conn = server.serve(s);
    const client = new TtrpcClient(c);
    const p = client.call(SVC, "Hang", new Uint8Array(0)).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 30));
    expect(conn.activeRequests).toBe(1);
    c.destroy();
    await p;
    await new Promise((r) => setTimeout(r, 30));
    expect(aborted).toBe(true);
    expect(conn.activeRequests).toBe(0);
  });
});

function req(method: string, payload = "") {
  return { service: SVC, method, payload: Buffer.from(payload), timeoutNano: 0, metadata: [] };
}
