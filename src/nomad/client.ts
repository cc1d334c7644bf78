// Nomad's HTTP API as nkitd uses it: allocations (identity of what nkit-cni wired), the native
// service catalogue and its event stream, and allocation check results. Every call carries the ACL
// token (re-read from tokenFile each time, so a rotated token is picked up) and a timeout; failures
// are NomadErrors naming the address and the call.
import { readFileSync } from "node:fs";
import { NomadError } from "../errors.js";

export interface NomadClientOptions {
  /** e.g. http://127.0.0.1:4646 */
  address: string;
  token?: string;
  /** Read at every call, so a rotated token is picked up. */
  tokenFile?: string;
  /** Per call (not the event stream); default 2 s. */
  timeoutMs?: number;
}

/** An allocation as Nomad's API returns it (the fields nkit reads). */
export interface NomadAllocationJson {
  ID: string;
  Namespace?: string;
  JobID: string;
  TaskGroup: string;
  TaskResources?: Record<string, unknown>;
  AllocatedResources?: { Tasks?: Record<string, unknown> };
}

/** One registration of a Nomad native service (GET /v1/service/:name, event payloads). */
export interface ServiceRegistration {
  ID: string;
  ServiceName: string;
  Namespace: string;
  NodeID?: string;
  JobID?: string;
  AllocID: string;
  Tags?: string[] | null;
  Address: string;
  Port: number;
  ModifyIndex?: number;
}

/** A Nomad Variable as its API returns it. */
export interface NomadVariable {
  Namespace: string;
  Path: string;
  Items: Record<string, string>;
  ModifyIndex: number;
}

/** One check result of an allocation (GET /v1/client/allocation/:id/checks). */
export interface CheckResult {
  ID?: string;
  Check?: string;
  Service?: string;
  Group?: string;
  Task?: string;
  Mode?: string;
  Status: string;
}

/** One event of the event stream (topic Service). */
export interface NomadEvent {
  Topic: string;
  Type: string;
  Key?: string;
  Namespace?: string;
  Index: number;
  Payload?: { Service?: ServiceRegistration };
}

/** A batch of events, or a heartbeat (no events). */
export interface EventBatch {
  index: number;
  events: NomadEvent[];
}

interface Answer<T> {
  body: T;
  /** X-Nomad-Index: the Raft index the answer reflects (0 when absent). */
  index: number;
}

export class NomadClient {
  constructor(private readonly opts: NomadClientOptions) {}

  get address(): string {
    return this.opts.address;
  }

  private token(): string | undefined {
    if (this.opts.tokenFile) return readFileSync(this.opts.tokenFile, "utf8").trim();
    return this.opts.token || undefined;
  }

  private url(path: string): string {
    return `${this.opts.address.replace(/\/+$/, "")}${path}`;
  }

  private headers(): Record<string, string> {
    const token = this.token();
    return token ? { "X-Nomad-Token": token } : {};
  }

  /** One call: the response when it is OK or one of `accept`, else a NomadError naming the call. */
  private async send(
    what: string,
    path: string,
    init: { method?: string; body?: unknown } = {},
    accept: readonly number[] = [],
  ): Promise<Response> {
    let res: Response;
    try {
      res = await fetch(this.url(path), {
        method: init.method ?? "GET",
        headers:
          init.body === undefined
            ? this.headers()
            : { ...this.headers(), "content-type": "application/json" },
        ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
        signal: AbortSignal.timeout(this.opts.timeoutMs ?? 2000),
      });
    } catch (e) {
      throw new NomadError(`Nomad at ${this.opts.address}: ${what}: ${(e as Error).message}`, {
        cause: e,
        retryable: true,
      });
    }
    if (!res.ok && !accept.includes(res.status)) {
      throw new NomadError(
        `Nomad at ${this.opts.address}: ${what}: HTTP ${res.status} ${(await res.text()).trim()}`,
        { retryable: res.status >= 500 },
      );
    }
    return res;
  }

  /** GET path; undefined on 404. */
  private async get<T>(what: string, path: string): Promise<Answer<T> | undefined> {
    const res = await this.send(what, path, {}, [404]);
    if (res.status === 404) return undefined;
    let body: T;
    try {
      body = (await res.json()) as T;
    } catch (e) {
      throw new NomadError(`Nomad at ${this.opts.address}: ${what}: unreadable answer`, { cause: e });
    }
    return { body, index: Number(res.headers.get("x-nomad-index") ?? 0) || 0 };
  }

  /** The allocation, or undefined when Nomad does not know it. */
  async allocation(id: string): Promise<NomadAllocationJson | undefined> {
    return (await this.get<NomadAllocationJson>(`get allocation ${id}`, `/v1/allocation/${id}?namespace=*`))
      ?.body;
  }

  /** Names of the native services per namespace, and the index of the listing. */
  async services(
    namespace: string,
  ): Promise<Answer<{ Namespace: string; Services: { ServiceName: string }[] }[]>> {
    const a = await this.get<{ Namespace: string; Services: { ServiceName: string }[] }[]>(
      "list services",
      `/v1/services?namespace=${encodeURIComponent(namespace)}`,
    );
    return a ?? { body: [], index: 0 };
  }

  /** Every registration of one service. */
  async registrations(namespace: string, name: string): Promise<Answer<ServiceRegistration[]>> {
    const a = await this.get<ServiceRegistration[]>(
      `get service ${namespace}/${name}`,
      `/v1/service/${encodeURIComponent(name)}?namespace=${encodeURIComponent(namespace)}`,
    );
    return a ?? { body: [], index: 0 };
  }

  /** The allocation's check results (served by its client agent); empty when it has none or is gone. */
  async checks(allocId: string): Promise<CheckResult[]> {
    const a = await this.get<Record<string, CheckResult>>(
      `get checks of allocation ${allocId}`,
      `/v1/client/allocation/${allocId}/checks`,
    );
    return Object.values(a?.body ?? {});
  }

  /** A Nomad Variable (items are strings), or undefined when it does not exist. */
  async variable(namespace: string, path: string): Promise<NomadVariable | undefined> {
    return (
      await this.get<NomadVariable>(
        `get variable ${path}`,
        `/v1/var/${path.split("/").map(encodeURIComponent).join("/")}?namespace=${encodeURIComponent(namespace)}`,
      )
    )?.body;
  }

  /**
   * Writes a variable if its ModifyIndex is still `cas` (0: only if it does not exist yet); false
   * when another write came first (HTTP 409, check-and-set conflict).
   */
  async putVariable(
    namespace: string,
    path: string,
    items: Record<string, string>,
    cas: number,
  ): Promise<boolean> {
    const res = await this.send(
      `put variable ${path}`,
      `/v1/var/${path.split("/").map(encodeURIComponent).join("/")}?namespace=${encodeURIComponent(namespace)}&cas=${cas}`,
      { method: "PUT", body: { Namespace: namespace, Path: path, Items: items } },
      [409],
    );
    if (res.status === 409) return false;
    return true;
  }

  /**
   * Follows the event stream of `topic` from `index` until `signal` aborts or the stream ends:
   * yields each batch (heartbeats as empty batches). Ends by throwing a NomadError when Nomad drops
   * or refuses the stream; the caller re-snapshots, since events may have been missed.
   */
  async *events(
    topic: string,
    namespace: string,
    index: number,
    signal: AbortSignal,
  ): AsyncGenerator<EventBatch> {
    const path = `/v1/event/stream?topic=${encodeURIComponent(topic)}&namespace=${encodeURIComponent(namespace)}&index=${index}`;
    // The request follows `signal`, and its answer's headers must also come within the usual
    // timeout (a client agent whose server went away can hold a request unanswered); only the
    // body, the stream itself, may then run on.
    const ctl = new AbortController();
    const follow = () => ctl.abort(signal.reason);
    if (signal.aborted) follow();
    signal.addEventListener("abort", follow, { once: true });
    const timeoutMs = this.opts.timeoutMs ?? 2000;
    const late = setTimeout(() => ctl.abort(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    let res: Response;
    try {
      res = await fetch(this.url(path), { headers: this.headers(), signal: ctl.signal });
    } catch (e) {
      signal.removeEventListener("abort", follow);
      const why = ctl.signal.reason instanceof Error ? ctl.signal.reason.message : (e as Error).message;
      throw new NomadError(`Nomad at ${this.opts.address}: event stream: ${why}`, { cause: e });
    } finally {
      clearTimeout(late);
    }
    if (!res.ok || !res.body) {
      // What Nomad says, if it says it in time.
      let body = "";
      const give = setTimeout(() => ctl.abort(), timeoutMs);
      try {
        body = (await res.text()).trim();
      } catch {
        // cut short: the status alone
      } finally {
        clearTimeout(give);
        signal.removeEventListener("abort", follow);
        ctl.abort();
      }
      throw new NomadError(`Nomad at ${this.opts.address}: event stream: HTTP ${res.status} ${body}`);
    }
    const decoder = new TextDecoder();
    let buffered = "";
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buffered += decoder.decode(chunk, { stream: true });
        let nl = buffered.indexOf("\n");
        while (nl >= 0) {
          const line = buffered.slice(0, nl).trim();
          buffered = buffered.slice(nl + 1);
          nl = buffered.indexOf("\n");
          if (!line) continue;
          const batch = JSON.parse(line) as { Index?: number; Events?: NomadEvent[]; Error?: string };
          if (batch.Error)
            throw new NomadError(`Nomad at ${this.opts.address}: event stream: ${batch.Error}`);
          yield { index: batch.Index ?? 0, events: batch.Events ?? [] };
        }
      }
    } catch (e) {
      if (signal.aborted) return;
      if (e instanceof NomadError) throw e;
      throw new NomadError(`Nomad at ${this.opts.address}: event stream: ${(e as Error).message}`, {
        cause: e,
      });
    } finally {
      signal.removeEventListener("abort", follow);
      ctl.abort(); // a consumer that stopped iterating early: the stream's socket goes too
    }
    if (!signal.aborted) throw new NomadError(`Nomad at ${this.opts.address}: event stream ended`);
  }
}
