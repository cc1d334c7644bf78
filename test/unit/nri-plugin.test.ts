// NriPlugin against a fake runtime that speaks the real wire protocol (mux + ttrpc) on a unix socket.
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { InvalidArgumentError, TtrpcError } from "../../src/errors.js";
import { Multiplexer } from "../../src/nri/mux.js";
import { type NriHandlers, NriPlugin, type NriPluginOptions } from "../../src/nri/plugin.js";
import {
  NriEvent,
  PLUGIN_SERVICE,
  type PodSandboxMessage,
  RUNTIME_SERVICE,
  runtimeSide,
} from "../../src/nri/types.js";
import { TtrpcClient } from "../../src/ttrpc/client.js";
import { Code } from "../../src/ttrpc/codes.js";
import { TtrpcServer } from "../../src/ttrpc/server.js";

interface RuntimeConn {
  socket: net.Socket;
  mux: Multiplexer;
  /** Calls the plugin (conn 1). */
  plugin: TtrpcClient;
  registered: Promise<{ name: string; index: string }>;
}

class FakeRuntime {
  readonly server: net.Server;
  readonly conns: RuntimeConn[] = [];
  private waiters: ((c: RuntimeConn) => void)[] = [];
  /** The next `failRegistrations` RegisterPlugin calls fail with `registerError`. */
  registerError = "invalid plugin index";
  failRegistrations = 0;

  constructor(readonly path: string) {
    this.server = net.createServer((socket) => this.accept(socket));
  }

  listen(): Promise<void> {
    return new Promise((r) => this.server.listen(this.path, r));
  }

  close(): Promise<void> {
    for (const c of this.conns) c.mux.close();
    return new Promise((r) => this.server.close(() => r()));
  }

  next(): Promise<RuntimeConn> {
    return new Promise((r) => this.waiters.push(r));
  }

  private accept(socket: net.Socket): void {
    const mux = new Multiplexer(socket);
    let resolveReg: (v: { name: string; index: string }) => void = () => {};
    const registered = new Promise<{ name: string; index: string }>((r) => {
      resolveReg = r;
    });
    new TtrpcServer()
      .register(RUNTIME_SERVICE, {
        RegisterPlugin: (p) => {
          if (this.failRegistrations > 0) {
            this.failRegistrations--;
            throw new Error(this.registerError);
          }
          resolveReg(runtimeSide.decodeRegister(p));
          return new Uint8Array(0);
        },
      })
      .serve(mux.open(2));
    const conn: RuntimeConn = { socket, mux, plugin: new TtrpcClient(mux.open(1)), registered };
    this.conns.push(conn);
    for (const w of this.waiters.splice(0)) w(conn);
  }
}

/** The standard runtime side of a connection: Configure, then Synchronize with `pods`. */
async function handshake(c: RuntimeConn, pods: PodSandboxMessage[] = []) {
  await c.registered;
  const events = runtimeSide.decodeConfigureResponse(
    await c.plugin.call(
      PLUGIN_SERVICE,
      "Configure",
      runtimeSide.encodeConfigure({ runtimeName: "fake", runtimeVersion: "0" }),
      { timeoutMs: 2000 },
    ),
  );
  const sync = runtimeSide.decodeSynchronizeResponse(
    await c.plugin.call(PLUGIN_SERVICE, "Synchronize", runtimeSide.encodeSynchronize(pods), {
      timeoutMs: 2000,
    }),
  );
  return { events, sync };
}

const POD_ID = "a".repeat(64);
const POD: PodSandboxMessage = {
  id: POD_ID,
  name: "web",
  uid: "uid-1",
  namespace: "default",
  labels: { app: "web" },
  annotations: { "io.kubernetes.cri.sandbox-id": "a".repeat(64) },
  linux: {
    cgroups_path: "/k8s.io/aaa",
    namespaces: [
      { type: "pid", path: "" },
      { type: "network", path: "/var/run/netns/cni-1234" },
    ],
  },
  pid: 2561,
};

/** A plugin that implements every pod event but does nothing with it (for connection tests). */
const IGNORE_PODS: NriHandlers = {
  runPodSandbox: () => {},
  stopPodSandbox: () => {},
  removePodSandbox: () => {},
};

let dir: string;
let runtime: FakeRuntime;
const plugins: NriPlugin[] = [];

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), "nkit-nri-"));
  runtime = new FakeRuntime(join(dir, "nri.sock"));
  await runtime.listen();
});
afterEach(async () => {
  await Promise.all(plugins.splice(0).map((p) => p.stop()));
  await runtime.close();
  rmSync(dir, { recursive: true, force: true });
});

function plugin(handlers: NriHandlers, extra: Partial<NriPluginOptions> = {}): NriPlugin {
  const p = new NriPlugin({
    socketPath: runtime.path,
    handlers,
    env: {},
    backoff: { initialMs: 20, maxMs: 100 },
    ...extra,
  });
  plugins.push(p);
  return p;
}

describe("NriPlugin", () => {
  it("registers, configures with mask 0x7, synchronizes and delivers StateChange pod events", async () => {
    const seen: string[] = [];
    let synced: string[] = [];
    const p = plugin({
      synchronize: (pods) => {
        synced = pods.map((x) => `${x.namespace}/${x.name}:${x.netnsPath}:${x.pid}`);
      },
      runPodSandbox: (pod) => {
        seen.push(`run ${pod.name} ${pod.netnsPath} ${pod.pid} ${pod.labels.app} ${pod.cgroupsPath}`);
      },
      stopPodSandbox: (pod) => {
        seen.push(`stop ${pod.id.slice(0, 4)} ${pod.netnsPath} ${pod.pid}`);
      },
      removePodSandbox: (pod) => {
        seen.push(`remove ${pod.name}`);
      },
    });
    const connected = new Promise((r) => p.once("connected", r));
    const conn = runtime.next();
    p.start();
    const c = await conn;
    expect(await c.registered).toEqual({ name: "nkit", index: "10" });
    await connected;
    const { events, sync } = await handshake(c, [POD]);
    expect(events).toBe(0x7);
    expect(sync).toEqual({ more: false, updates: 0 });
    expect(synced).toEqual(["default/web:/var/run/netns/cni-1234:2561"]);
    expect(p.synchronized).toBe(true);
    expect(p.runtimeInfo?.requestTimeoutMs).toBe(2000);

    const md = { metadata: [{ key: "containerd-namespace-ttrpc", value: "k8s.io" }], timeoutMs: 2000 };
    for (const ev of [NriEvent.RUN_POD_SANDBOX, NriEvent.STOP_POD_SANDBOX, NriEvent.REMOVE_POD_SANDBOX]) {
      const pod =
        ev === NriEvent.RUN_POD_SANDBOX ? POD : { id: POD_ID, name: "web", namespace: "default", linux: {} };
      const out = await c.plugin.call(
        PLUGIN_SERVICE,
        "StateChange",
        runtimeSide.encodeStateChange(ev, pod),
        md,
      );
      expect(out.length).toBe(0);
    }
    // an event we did not subscribe to is acknowledged
    await c.plugin.call(PLUGIN_SERVICE, "StateChange", runtimeSide.encodeStateChange(6, POD), md);
    expect(seen).toEqual([
      "run web /var/run/netns/cni-1234 2561 web /k8s.io/aaa",
      "stop aaaa undefined undefined",
      "remove web",
    ]);
  });

  it("serves the dedicated v0.12 RPCs with the same handlers", async () => {
    const seen: string[] = [];
    const p = plugin({
      runPodSandbox: (pod) => void seen.push(`run ${pod.netnsPath}`),
      stopPodSandbox: (pod) => void seen.push(`stop ${pod.name}`),
      removePodSandbox: (pod) => void seen.push(`remove ${pod.name}`),
    });
    const conn = runtime.next();
    p.start();
    const c = await conn;
    await handshake(c);
    for (const m of ["RunPodSandbox", "StopPodSandbox", "RemovePodSandbox"]) {
      expect((await c.plugin.call(PLUGIN_SERVICE, m, runtimeSide.encodePodRequest(POD))).length).toBe(0);
    }
    expect(seen).toEqual(["run /var/run/netns/cni-1234", "stop web", "remove web"]);
    // methods we do not implement are UNIMPLEMENTED (the v0.12 runtime then falls back to StateChange)
    const err = await c.plugin
      .call(PLUGIN_SERVICE, "CreateContainer", new Uint8Array(0))
      .catch((e: unknown) => e);
    expect((err as TtrpcError).status).toBe(Code.UNIMPLEMENTED);
  });

  it("accumulates chunked Synchronize (more=true) and reconciles once", async () => {
    const batches: string[][] = [];
    const p = plugin({ ...IGNORE_PODS, synchronize: (pods) => void batches.push(pods.map((x) => x.name)) });
    const conn = runtime.next();
    p.start();
    const c = await conn;
    await c.registered;
    await c.plugin.call(PLUGIN_SERVICE, "Configure", runtimeSide.encodeConfigure({}));
    const r1 = await c.plugin.call(
      PLUGIN_SERVICE,
      "Synchronize",
      runtimeSide.encodeSynchronize(
        [
          { ...POD, name: "a" },
          { ...POD, name: "b" },
        ],
        true,
      ),
    );
    expect(runtimeSide.decodeSynchronizeResponse(r1)).toEqual({ more: true, updates: 0 });
    expect(batches).toEqual([]);
    const r2 = await c.plugin.call(
      PLUGIN_SERVICE,
      "Synchronize",
      runtimeSide.encodeSynchronize([{ ...POD, name: "c" }]),
    );
    expect(runtimeSide.decodeSynchronizeResponse(r2)).toEqual({ more: false, updates: 0 });
    expect(batches).toEqual([["a", "b", "c"]]);
  });

  it("turns a RUN handler error into an error status naming the pod (fails the pod)", async () => {
    const p = plugin({
      runPodSandbox: async () => {
        throw new Error("no addresses for this pod");
      },
    });
    const conn = runtime.next();
    p.start();
    const c = await conn;
    await handshake(c);
    const err = await c.plugin
      .call(PLUGIN_SERVICE, "StateChange", runtimeSide.encodeStateChange(1, POD), { timeoutMs: 2000 })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TtrpcError);
    expect((err as TtrpcError).status).toBe(Code.UNKNOWN);
    expect((err as TtrpcError).detail).toMatch(
      /nkit: runPodSandbox for pod default\/web \(a{64}\) failed: no addresses for this pod/,
    );
    expect(p.connected).toBe(true);
  });

  it("answers DEADLINE_EXCEEDED before the runtime's deadline and keeps serving other requests", async () => {
    const p = plugin(
      {
        runPodSandbox: (_pod, ctx) =>
          new Promise<void>((resolve) => {
            const t = setTimeout(resolve, 5000);
            ctx.signal.addEventListener("abort", () => {
              clearTimeout(t);
              resolve();
            });
          }),
        stopPodSandbox: () => {},
      },
      { deadlineMarginMs: 100 },
    );
    const conn = runtime.next();
    p.start();
    const c = await conn;
    await handshake(c);
    const t0 = Date.now();
    const slow = c.plugin
      .call(PLUGIN_SERVICE, "StateChange", runtimeSide.encodeStateChange(1, POD), { timeoutMs: 400 })
      .catch((e: unknown) => e);
    // the connection is not blocked by the slow handler
    await c.plugin.call(PLUGIN_SERVICE, "StateChange", runtimeSide.encodeStateChange(2, POD), {
      timeoutMs: 400,
    });
    const err = await slow;
    expect((err as TtrpcError).status).toBe(Code.DEADLINE_EXCEEDED);
    expect(Date.now() - t0).toBeLessThan(400);
    expect(p.connected).toBe(true);
  });

  it("reconnects with backoff after the runtime drops the connection, and resynchronizes", async () => {
    let syncs = 0;
    const p = plugin({ ...IGNORE_PODS, synchronize: () => void syncs++ });
    const disconnected = new Promise<Error | undefined>((r) => p.once("disconnected", r));
    let conn = runtime.next();
    p.start();
    const c1 = await conn;
    await handshake(c1, [POD]);
    conn = runtime.next();
    c1.socket.destroy();
    expect(await disconnected).toBeInstanceOf(Error);
    const c2 = await conn;
    await handshake(c2, [POD]);
    expect(syncs).toBe(2);
    expect(p.connected).toBe(true);
  });

  it("retries while the socket does not exist, then connects", async () => {
    const late = join(dir, "late.sock");
    const p = new NriPlugin({
      socketPath: late,
      handlers: IGNORE_PODS,
      env: {},
      backoff: { initialMs: 10, maxMs: 40 },
    });
    plugins.push(p);
    p.start();
    await new Promise((r) => setTimeout(r, 150));
    expect(p.connected).toBe(false);
    const rt2 = new FakeRuntime(late);
    await rt2.listen();
    const conn = rt2.next();
    const c = await conn;
    await handshake(c);
    expect(p.synchronized).toBe(true);
    await p.stop();
    await rt2.close();
  });

  it("reconnects when no Synchronize follows registration (nri v0.6.1 silent failure)", async () => {
    const p = plugin(IGNORE_PODS, { synchronizeTimeoutMs: 150 });
    let conn = runtime.next();
    p.start();
    const c1 = await conn;
    await c1.registered;
    conn = runtime.next();
    const c2 = await conn; // plugin gave up on c1 and came back
    await handshake(c2);
    expect(c1.mux.closed).toBe(true);
  });

  it("reconnects after a failed registration", async () => {
    runtime.failRegistrations = 2;
    const p = plugin(IGNORE_PODS);
    p.start();
    while (runtime.conns.length < 3) await runtime.next();
    const c2 = runtime.conns[2]!;
    await handshake(c2);
    expect(p.synchronized).toBe(true);
  });

  it("stop() closes the connection and ends the loop", async () => {
    const p = plugin(IGNORE_PODS);
    const conn = runtime.next();
    p.start();
    const c = await conn;
    await handshake(c);
    const stopped = new Promise<void>((r) => p.once("stopped", () => r()));
    await p.stop();
    await stopped;
    expect(p.connected).toBe(false);
    await new Promise((r) => setTimeout(r, 100));
    expect(runtime.conns.length).toBe(1);
  });

  it("validates name, index and events, and takes identity from the pre-launch environment", () => {
    expect(() => new NriPlugin({ handlers: {}, env: {}, index: "1" })).toThrow(InvalidArgumentError);
    expect(() => new NriPlugin({ handlers: {}, env: {}, name: "bad name!" })).toThrow(/must match/);
    expect(() => new NriPlugin({ handlers: {}, env: {}, events: 0x800 })).toThrow(/0x7ff/);
    expect(() => new NriPlugin({ handlers: {}, env: { NRI_PLUGIN_SOCKET: "x" } })).toThrow(/file descriptor/);
    const p = new NriPlugin({
      handlers: IGNORE_PODS,
      env: { NRI_PLUGIN_SOCKET: "3", NRI_PLUGIN_NAME: "nkit", NRI_PLUGIN_IDX: "05" },
      name: "ignored",
    });
    expect([p.preLaunched, p.name, p.index]).toEqual([true, "nkit", "05"]);
    const q = new NriPlugin({ handlers: IGNORE_PODS, env: {}, name: "ebpfnet", index: "42" });
    expect([q.preLaunched, q.name, q.index, q.events, q.socketPath]).toEqual([
      false,
      "ebpfnet",
      "42",
      7,
      "/var/run/nri/nri.sock",
    ]);
  });

  it("subscribes to exactly the pod events it has handlers for", async () => {
    const mask = (handlers: NriHandlers, events?: number) =>
      new NriPlugin({ handlers, env: {}, ...(events === undefined ? {} : { events }) }).events;
    expect(mask({ runPodSandbox: () => {} })).toBe(0x1);
    expect(mask({ stopPodSandbox: () => {}, removePodSandbox: () => {} })).toBe(0x6);
    expect(mask(IGNORE_PODS)).toBe(0x7);
    expect(mask(IGNORE_PODS, 0x2)).toBe(0x2);
    expect(() => mask({ synchronize: () => {} })).toThrow(/implements no event handler/);
    expect(() => mask({ runPodSandbox: () => {} }, 0x3)).toThrow(/no handler implements \(0x2\)/);
    expect(() => mask(IGNORE_PODS, 0x10)).toThrow(InvalidArgumentError);

    // Configure answers with that mask, and a StateChange reaches only the handler that exists.
    const seen: string[] = [];
    const p = plugin({ removePodSandbox: (pod) => void seen.push(`remove ${pod.name}`) });
    const conn = runtime.next();
    p.start();
    const c = await conn;
    const { events } = await handshake(c, [POD]);
    expect(events).toBe(0x4);
    for (const ev of [NriEvent.RUN_POD_SANDBOX, NriEvent.REMOVE_POD_SANDBOX]) {
      await c.plugin.call(PLUGIN_SERVICE, "StateChange", runtimeSide.encodeStateChange(ev, POD), {
        timeoutMs: 2000,
      });
    }
    expect(seen).toEqual(["remove web"]);
  });
});
