// The NRI plugin: connects to the runtime's NRI socket (or uses the fd a runtime hands a pre-launched
// plugin), registers, answers Configure/Synchronize and delivers pod-sandbox events to typed handlers.
// Modelled on containerd/nri pkg/stub. As there, the subscription mask
// is built from the handlers the plugin implements, so no handler exists without its event and no
// event is subscribed that nothing handles.
//
//   const p = new NriPlugin({ handlers: { runPodSandbox: async (pod) => wire(pod) } });
//   p.on("synchronized", ...); p.start(); … await p.stop();
//
// Behaviour that matters for the runtime:
// - conn 1 is served before RegisterPlugin goes out on conn 2 (Configure can beat the register reply).
// - Handlers run concurrently; a handler still running when the runtime's deadline (timeout_nano)
//   is `deadlineMarginMs` away is answered DEADLINE_EXCEEDED (which fails a RUN, rather than the
//   runtime dropping the plugin and starting the pod unwired) and logged as an error.
// - A handler error becomes a ttrpc UNKNOWN status with the error message; on RUN that fails the pod.
// - Both StateChange (nri <= v0.11) and the dedicated Run/Stop/RemovePodSandbox RPCs (v0.12) are served.
// - If Synchronize fails or never arrives (nri v0.6.1 then silently never sends events) the connection
//   is closed and re-established, with capped exponential backoff, as after any disconnect.
import { EventEmitter } from "node:events";
import net from "node:net";
import type { Duplex } from "node:stream";
import type { Logger } from "pino";
import { pino } from "pino";
import { InvalidArgumentError, NriError, TtrpcError } from "../errors.js";
import { TtrpcClient } from "../ttrpc/client.js";
import { Code, statusError } from "../ttrpc/codes.js";
import { type TtrpcCall, TtrpcServer } from "../ttrpc/server.js";
import { MUX_MAX_FRAME, Multiplexer, PLUGIN_SERVICE_CONN, RUNTIME_SERVICE_CONN } from "./mux.js";
import {
  decodeConfigure,
  decodePodRequest,
  decodeStateChange,
  decodeSynchronize,
  EMPTY,
  encodeConfigureResponse,
  encodeRegister,
  encodeSynchronizeResponse,
  eventMask,
  type NriConfigureInfo,
  type NriContainer,
  NriEvent,
  type NriPodSandbox,
  PLUGIN_SERVICE,
  RUNTIME_SERVICE,
  VALID_EVENTS_V06,
} from "./types.js";

export const DEFAULT_NRI_SOCKET = "/var/run/nri/nri.sock";

export interface NriHandlerContext {
  /** Aborted when the runtime's deadline (minus the margin) passes or the connection drops. */
  signal: AbortSignal;
  /** Absolute deadline (Date.now() scale), when the runtime sent one. */
  deadline: number | undefined;
}

type Awaitable<T> = T | Promise<T>;

export interface NriHandlers {
  configure?(info: NriConfigureInfo): Awaitable<void>;
  /** All pods and containers the runtime knows, after every (re)connect; reconcile against them. */
  synchronize?(pods: NriPodSandbox[], containers: NriContainer[], ctx: NriHandlerContext): Awaitable<void>;
  /** Throwing fails the pod (fail-closed). Keep it fast: it adds to every pod start on the node. */
  runPodSandbox?(pod: NriPodSandbox, ctx: NriHandlerContext): Awaitable<void>;
  /** netns path and pid are usually absent here (containerd 1.7): look the pod up by id. */
  stopPodSandbox?(pod: NriPodSandbox, ctx: NriHandlerContext): Awaitable<void>;
  removePodSandbox?(pod: NriPodSandbox, ctx: NriHandlerContext): Awaitable<void>;
  shutdown?(): Awaitable<void>;
}

export interface NriPluginOptions {
  /** External plugin socket (default /var/run/nri/nri.sock). Ignored when NRI_PLUGIN_SOCKET is set. */
  socketPath?: string;
  /** Plugin name, `[A-Za-z0-9_.+-]+` (default "nkit"). */
  name?: string;
  /** Two-digit plugin index (default "10"). */
  index?: string;
  /**
   * Narrows the event subscription (default: every pod event a handler exists for); must be a
   * non-zero subset of 0x7ff and of the handled events.
   */
  events?: number;
  handlers: NriHandlers;
  log?: Logger;
  /** Reconnect after the connection goes away (default true; never for pre-launched plugins). */
  reconnect?: boolean;
  /** Reconnect delays: starts at initialMs, doubles up to maxMs (defaults 250 and 10000). */
  backoff?: { initialMs?: number; maxMs?: number };
  /** Timeout of the RegisterPlugin call (default 5000 ms, the runtime's registration budget). */
  registrationTimeoutMs?: number;
  /** External plugins: reconnect if Synchronize has not completed this long after registering (default 15000). */
  synchronizeTimeoutMs?: number;
  /** Answer DEADLINE_EXCEEDED this long before the runtime's deadline (default 200 ms). */
  deadlineMarginMs?: number;
  /** Handlers slower than this are logged as warnings (default 100 ms). */
  slowHandlerMs?: number;
  /** Custom dialer replacing the socket connect (tests, proxies); like pkg/stub's WithDialer. */
  dial?: () => Promise<Duplex>;
  /** Environment consulted for NRI_PLUGIN_SOCKET/NAME/IDX (default process.env). */
  env?: Record<string, string | undefined>;
}

export interface NriConnectionInfo {
  mode: "external" | "pre-launched";
  /** Socket path (external) or fd (pre-launched). */
  endpoint: string;
  name: string;
  index: string;
}

export type NriPluginEvents = {
  /** Registered with the runtime. */
  connected: [info: NriConnectionInfo];
  configured: [info: NriConfigureInfo];
  synchronized: [summary: { pods: number; containers: number }];
  /** A registered connection ended; `err` says why (undefined after stop()). */
  disconnected: [err: Error | undefined];
  /** stop() finished, or a pre-launched plugin's connection ended. */
  stopped: [];
};

const NAME_RE = /^[A-Za-z0-9_.+-]+$/;
const INDEX_RE = /^[0-9]{2}$/;

type PodEventKind = "runPodSandbox" | "stopPodSandbox" | "removePodSandbox";

/** Each pod handler and the event that delivers it: the one table the mask and the dispatch use. */
const POD_EVENTS: Record<PodEventKind, number> = {
  runPodSandbox: NriEvent.RUN_POD_SANDBOX,
  stopPodSandbox: NriEvent.STOP_POD_SANDBOX,
  removePodSandbox: NriEvent.REMOVE_POD_SANDBOX,
};
const POD_EVENT_KINDS = Object.keys(POD_EVENTS) as PodEventKind[];

/** The subscription mask of the events `handlers` implements. */
function handledEvents(handlers: NriHandlers): number {
  return eventMask(...POD_EVENT_KINDS.filter((k) => handlers[k] !== undefined).map((k) => POD_EVENTS[k]));
}

/** The mask to subscribe: `requested` when given (checked against `handled`), else `handled`. */
function subscription(handled: number, requested: number | undefined): number {
  const hex = (m: number) => `0x${m.toString(16)}`;
  if (
    requested !== undefined &&
    (!Number.isInteger(requested) || requested <= 0 || (requested & ~VALID_EVENTS_V06) !== 0)
  ) {
    throw new InvalidArgumentError(
      `NRI event mask ${hex(requested)} must be a non-zero subset of 0x7ff (events 1-11)`,
    );
  }
  if (handled === 0) {
    throw new InvalidArgumentError(
      "the NRI plugin implements no event handler (runPodSandbox, stopPodSandbox or removePodSandbox)",
    );
  }
  const mask = requested ?? handled;
  const unhandled = mask & ~handled;
  if (unhandled !== 0) {
    throw new InvalidArgumentError(
      `NRI event mask ${hex(mask)} subscribes to events no handler implements (${hex(unhandled)}); ` +
        `the handlers implement ${hex(handled)}`,
    );
  }
  return mask;
}

function podKindOf(event: number): PodEventKind | undefined {
  return POD_EVENT_KINDS.find((k) => POD_EVENTS[k] === event);
}

interface Session {
  mux: Multiplexer;
  syncPods: NriPodSandbox[];
  syncContainers: NriContainer[];
  synchronized: boolean;
}

export class NriPlugin extends EventEmitter<NriPluginEvents> {
  readonly name: string;
  readonly index: string;
  readonly socketPath: string;
  readonly events: number;
  private readonly handlers: NriHandlers;
  private readonly log: Logger;
  private readonly preLaunchedFd: number | undefined;
  private readonly dial: (() => Promise<Duplex>) | undefined;
  private readonly reconnect: boolean;
  private readonly backoffInitial: number;
  private readonly backoffMax: number;
  private readonly registrationTimeoutMs: number;
  private readonly synchronizeTimeoutMs: number;
  private readonly deadlineMarginMs: number;
  private readonly slowHandlerMs: number;
  private session: Session | undefined;
  private loop: Promise<void> | undefined;
  private stopping = false;
  private wake: (() => void) | undefined;
  private _connected = false;
  private _lastError = "";
  private _synchronized = false;
  private _configure: NriConfigureInfo | undefined;

  constructor(opts: NriPluginOptions) {
    super();
    const env = opts.env ?? process.env;
    const fdText = env.NRI_PLUGIN_SOCKET;
    if (fdText !== undefined && fdText !== "") {
      const fd = Number(fdText);
      if (!Number.isInteger(fd) || fd < 0) {
        throw new InvalidArgumentError(`NRI_PLUGIN_SOCKET must be a file descriptor number, got "${fdText}"`);
      }
      this.preLaunchedFd = fd;
    }
    // A pre-launched plugin is named by its file (NN-name); the runtime ignores what it registers.
    this.name = (this.preLaunchedFd !== undefined ? env.NRI_PLUGIN_NAME : undefined) ?? opts.name ?? "nkit";
    this.index = (this.preLaunchedFd !== undefined ? env.NRI_PLUGIN_IDX : undefined) ?? opts.index ?? "10";
    if (!NAME_RE.test(this.name)) {
      throw new InvalidArgumentError(`NRI plugin name "${this.name}" must match [A-Za-z0-9_.+-]+`);
    }
    if (!INDEX_RE.test(this.index)) {
      throw new InvalidArgumentError(`NRI plugin index "${this.index}" must be exactly two digits`);
    }
    this.events = subscription(handledEvents(opts.handlers), opts.events);
    this.socketPath = opts.socketPath ?? DEFAULT_NRI_SOCKET;
    this.handlers = opts.handlers;
    this.dial = opts.dial;
    this.log = (opts.log ?? pino({ level: "silent" })).child({ component: "nri", plugin: this.name });
    this.reconnect = this.preLaunchedFd === undefined && (opts.reconnect ?? true);
    this.backoffInitial = opts.backoff?.initialMs ?? 250;
    this.backoffMax = Math.max(this.backoffInitial, opts.backoff?.maxMs ?? 10_000);
    this.registrationTimeoutMs = opts.registrationTimeoutMs ?? 5000;
    this.synchronizeTimeoutMs = opts.synchronizeTimeoutMs ?? 15_000;
    this.deadlineMarginMs = opts.deadlineMarginMs ?? 200;
    this.slowHandlerMs = opts.slowHandlerMs ?? 100;
  }

  get preLaunched(): boolean {
    return this.preLaunchedFd !== undefined;
  }

  /** Registered with the runtime right now. */
  get connected(): boolean {
    return this._connected;
  }

  /** Why the last connection attempt failed; "" once connected (and before any attempt). */
  get lastError(): string {
    return this._lastError;
  }

  /** The current connection has completed Synchronize. */
  get synchronized(): boolean {
    return this._synchronized;
  }

  /** What the runtime said in the last Configure. */
  get runtimeInfo(): NriConfigureInfo | undefined {
    return this._configure;
  }

  /** Starts connecting in the background; watch `connected`/`synchronized`/`disconnected`. */
  start(): void {
    if (this.loop) throw new NriError("NRI plugin already started");
    this.stopping = false;
    this.loop = this.run().finally(() => {
      this.loop = undefined;
      this.emit("stopped");
    });
  }

  /** Closes the connection and stops reconnecting. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wake?.();
    this.session?.mux.close();
    await this.loop;
  }

  private async run(): Promise<void> {
    let delay = this.backoffInitial;
    let attempt = 0;
    while (!this.stopping) {
      attempt++;
      let registered = false;
      try {
        const trunk = await this.open();
        registered = await this.runSession(trunk);
      } catch (err) {
        this._lastError = errMessage(err);
        const level = attempt === 1 || (attempt & (attempt - 1)) === 0 ? "warn" : "debug";
        this.log[level]({ err: errMessage(err), attempt }, "NRI connection attempt failed");
      }
      if (this.stopping || !this.reconnect) break;
      if (registered) {
        delay = this.backoffInitial;
        attempt = 0;
      }
      const wait = Math.round(delay * (0.8 + Math.random() * 0.4));
      this.log.debug({ delayMs: wait }, "NRI reconnect scheduled");
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, wait);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wake = undefined;
      delay = Math.min(delay * 2, this.backoffMax);
    }
  }

  private open(): Promise<Duplex> {
    if (this.dial) return this.dial();
    if (this.preLaunchedFd !== undefined) {
      return Promise.resolve(new net.Socket({ fd: this.preLaunchedFd, readable: true, writable: true }));
    }
    return new Promise<Duplex>((resolve, reject) => {
      const s = net.createConnection({ path: this.socketPath });
      const onError = (err: Error) => {
        s.destroy();
        reject(
          new NriError(`cannot connect to NRI socket ${this.socketPath}: ${err.message}`, { cause: err }),
        );
      };
      s.once("error", onError);
      s.once("connect", () => {
        s.off("error", onError);
        resolve(s);
      });
    });
  }

  /** Runs one connection until it closes; resolves true if registration succeeded. */
  private async runSession(trunk: Duplex): Promise<boolean> {
    const mux = new Multiplexer(trunk, { maxFrameSize: MUX_MAX_FRAME, log: this.log });
    const session: Session = { mux, syncPods: [], syncContainers: [], synchronized: false };
    this.session = session;
    const closed = new Promise<Error | undefined>((resolve) => mux.once("close", resolve));
    // Serve conn 1 before registering: Configure may arrive before the RegisterPlugin reply.
    const server = this.buildServer(session);
    server.serve(mux.open(PLUGIN_SERVICE_CONN)).on("late", (call, elapsedMs) => {
      this.log.error(
        { method: call.method, elapsedMs },
        "NRI handler finished after the runtime's deadline; it was answered DEADLINE_EXCEEDED",
      );
    });
    const client = new TtrpcClient(mux.open(RUNTIME_SERVICE_CONN), { log: this.log });
    if (this.stopping) mux.close();
    const endpoint = this.preLaunchedFd !== undefined ? `fd ${this.preLaunchedFd}` : this.socketPath;
    let syncTimer: NodeJS.Timeout | undefined;
    try {
      await client.call(RUNTIME_SERVICE, "RegisterPlugin", encodeRegister(this.name, this.index), {
        timeoutMs: this.registrationTimeoutMs,
      });
    } catch (err) {
      mux.close(err instanceof Error ? err : undefined);
      throw new NriError(
        `RegisterPlugin as ${this.index}-${this.name} on ${endpoint} failed: ${errMessage(err)}`,
        {
          cause: err,
        },
      );
    }
    this._connected = true;
    this._lastError = "";
    this.log.info({ endpoint, index: this.index, preLaunched: this.preLaunched }, "NRI plugin registered");
    this.emit("connected", {
      mode: this.preLaunched ? "pre-launched" : "external",
      endpoint,
      name: this.name,
      index: this.index,
    });
    // nri v0.6.1 sends pre-launched plugins no Synchronize; external ones must get it, or no events follow.
    if (!this.preLaunched && !session.synchronized) {
      syncTimer = setTimeout(() => {
        if (session.synchronized) return;
        this.log.error(
          { timeoutMs: this.synchronizeTimeoutMs },
          "NRI runtime sent no Synchronize after registration; reconnecting",
        );
        mux.close(new NriError(`no Synchronize within ${this.synchronizeTimeoutMs} ms of registration`));
      }, this.synchronizeTimeoutMs);
    }
    const err = await closed;
    if (syncTimer) clearTimeout(syncTimer);
    client.close();
    this._connected = false;
    this._synchronized = false;
    if (this.session === session) this.session = undefined;
    if (this.stopping) this.log.info("NRI plugin disconnected (stopped)");
    else
      this.log.warn(
        { err: err ? err.message : "connection closed by the runtime" },
        "NRI plugin disconnected",
      );
    this.emit(
      "disconnected",
      this.stopping ? undefined : (err ?? new NriError("NRI connection closed by the runtime")),
    );
    return true;
  }

  private buildServer(session: Session): TtrpcServer {
    const server = new TtrpcServer({
      log: this.log,
      deadlineMarginMs: this.deadlineMarginMs,
      // Be lenient when receiving: nri v0.6.1 does not chunk Synchronize.
      maxRecvMessageSize: MUX_MAX_FRAME,
    });
    const podEvent = (kind: PodEventKind) => async (payload: Uint8Array, call: TtrpcCall) => {
      await this.dispatchPod(kind, decodePodRequest(payload), call);
      return EMPTY;
    };
    server.register(PLUGIN_SERVICE, {
      Configure: async (payload, call) => {
        const info = decodeConfigure(payload);
        this._configure = info;
        this.log.info(
          {
            runtime: `${info.runtimeName} ${info.runtimeVersion}`,
            nriVersion: info.nriVersion || undefined,
            requestTimeoutMs: info.requestTimeoutMs,
          },
          "NRI configure",
        );
        if (this.handlers.configure) {
          await this.timed("configure", call, () => this.handlers.configure?.(info));
        }
        this.emit("configured", info);
        return encodeConfigureResponse(this.events);
      },
      Synchronize: async (payload, call) => {
        const chunk = decodeSynchronize(payload);
        session.syncPods.push(...chunk.pods);
        session.syncContainers.push(...chunk.containers);
        if (chunk.more) return encodeSynchronizeResponse(true);
        const pods = session.syncPods;
        const containers = session.syncContainers;
        session.syncPods = [];
        session.syncContainers = [];
        try {
          if (this.handlers.synchronize) {
            const h = this.handlers.synchronize;
            await this.timed("synchronize", call, () => h(pods, containers, ctxOf(call)));
          }
        } catch (err) {
          this.log.error(
            { err: errMessage(err), pods: pods.length },
            "NRI synchronize handler failed; reconnecting",
          );
          // nri v0.6.1 keeps a plugin whose Synchronize failed connected but never sends it events.
          setTimeout(
            () => session.mux.close(new NriError(`synchronize handler failed: ${errMessage(err)}`)),
            50,
          );
          throw statusError(Code.UNKNOWN, `${this.name}: synchronize failed: ${errMessage(err)}`);
        }
        session.synchronized = true;
        this._synchronized = true;
        this.log.info({ pods: pods.length, containers: containers.length }, "NRI synchronized");
        this.emit("synchronized", { pods: pods.length, containers: containers.length });
        return encodeSynchronizeResponse(false);
      },
      Shutdown: async (_payload, call) => {
        this.log.info("NRI runtime asked the plugin to shut down");
        if (this.handlers.shutdown) await this.timed("shutdown", call, () => this.handlers.shutdown?.());
        return EMPTY;
      },
      StateChange: async (payload, call) => {
        const ev = decodeStateChange(payload);
        const kind = podKindOf(ev.event);
        if (kind) await this.dispatchPod(kind, ev.pod, call);
        else this.log.debug({ event: ev.event }, "NRI event not handled");
        return EMPTY;
      },
      RunPodSandbox: podEvent("runPodSandbox"),
      StopPodSandbox: podEvent("stopPodSandbox"),
      RemovePodSandbox: podEvent("removePodSandbox"),
    });
    return server;
  }

  private async dispatchPod(kind: PodEventKind, pod: NriPodSandbox, call: TtrpcCall): Promise<void> {
    const h = this.handlers[kind];
    const podLog = { pod: `${pod.namespace}/${pod.name}`, id: pod.id, netns: pod.netnsPath, pid: pod.pid };
    this.log.debug({ ...podLog, via: call.method }, `NRI ${kind}`);
    if (!h) return;
    try {
      await this.timed(kind, call, () => h.call(this.handlers, pod, ctxOf(call)), podLog);
    } catch (err) {
      this.log.error({ ...podLog, err: errMessage(err) }, `NRI ${kind} handler failed`);
      const code = err instanceof TtrpcError ? err.status : Code.UNKNOWN;
      throw statusError(
        code,
        `${this.name}: ${kind} for pod ${pod.namespace}/${pod.name} (${pod.id}) failed: ${errMessage(err)}`,
        { cause: err },
      );
    }
  }

  private async timed(
    what: string,
    call: TtrpcCall,
    fn: () => Awaitable<void>,
    fields: Record<string, unknown> = {},
  ): Promise<void> {
    const t0 = performance.now();
    try {
      await fn();
    } finally {
      const ms = performance.now() - t0;
      const budget = call.deadline !== undefined ? call.deadline - Date.now() + ms : undefined;
      if (ms > this.slowHandlerMs) {
        this.log.warn(
          { ...fields, handler: what, elapsedMs: Math.round(ms), budgetMs: budget && Math.round(budget) },
          "slow NRI handler: it delays every pod operation on this node",
        );
      }
    }
  }
}

function ctxOf(call: TtrpcCall): NriHandlerContext {
  return { signal: call.signal, deadline: call.deadline };
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
