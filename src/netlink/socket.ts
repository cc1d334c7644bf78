// An rtnetlink socket over the addon's transport: sequence numbers, one transaction at a time, acks,
// dumps and NLMSG_ERROR decoding (including the kernel's extended-ack text).
import { ClosedError, type NetlinkError } from "../errors.js";
import { netlinkAddon } from "../native/netlink.js";
import { decodeAttrs, decodeError, decodeMessages, encodeMessage, type NlMessage } from "./codec.js";
import {
  NETLINK_ROUTE,
  NLM_F_ACK,
  NLM_F_ACK_TLVS,
  NLM_F_DUMP,
  NLM_F_DUMP_INTR,
  NLM_F_REQUEST,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_NOOP,
  NLMSGERR_ATTR_MSG,
} from "./constants.js";
import { netlinkError, netnsFailure, transportFailure } from "./failures.js";

export interface RtnlSocketOptions {
  /** Create the socket inside this network namespace (e.g. /run/netns/pod1); default: our own. */
  netnsPath?: string | undefined;
  /** How long one transaction may wait for the kernel's answers (default 10 s). */
  timeoutMs?: number | undefined;
}

/** One request of a transaction; `operation` names it in errors ("create veth nk1 (peer eth0)"). */
export interface NlRequest {
  type: number;
  /** Extra flags besides NLM_F_REQUEST (and NLM_F_ACK, which request() always adds). */
  flags: number;
  body: readonly Uint8Array[];
  operation: string;
  /** Maps the kernel's refusal to the error callers see; undefined means "that is fine" (EEXIST
   * for an object that may exist already). Without it the NetlinkError stands. */
  fail?: (e: NetlinkError) => unknown;
}

/** What one request of a transaction came to. */
export type NlSettled = { ok: true; replies: NlMessage[] } | { ok: false; error: unknown };

const DUMP_RETRIES = 5;

export class RtnlSocket {
  readonly netnsPath: string | undefined;
  private fd: number;
  private readonly timeoutMs: number;
  private seq: number;
  private tail: Promise<unknown> = Promise.resolve();

  private constructor(fd: number, netnsPath: string | undefined, timeoutMs: number) {
    this.fd = fd;
    this.netnsPath = netnsPath;
    this.timeoutMs = timeoutMs;
    // Distinct starting points keep replies to different sockets from ever looking alike in traces.
    this.seq = (Date.now() & 0xffff) << 8;
  }

  static async open(options: RtnlSocketOptions = {}): Promise<RtnlSocket> {
    const path = options.netnsPath;
    let fd: number;
    try {
      fd = await netlinkAddon().nlOpen(path ?? null, NETLINK_ROUTE);
    } catch (e) {
      throw path ? netnsFailure(path, e) : transportFailure("open rtnetlink socket", e);
    }
    return new RtnlSocket(fd, path, options.timeoutMs ?? 10_000);
  }

  get closed(): boolean {
    return this.fd < 0;
  }

  /** Where this socket acts, for operation names: "" for our own netns, " in /run/netns/x" otherwise. */
  get where(): string {
    return this.netnsPath ? ` in ${this.netnsPath}` : "";
  }

  /** Runs transactions strictly one after another: replies are matched by seq on a shared fd. */
  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn, fn);
    this.tail = run.catch(() => undefined);
    return run;
  }

  private nextSeq(): number {
    this.seq = (this.seq + 1) >>> 0 || 1;
    return this.seq;
  }

  private async transact(requests: readonly NlRequest[], flagsOf: (r: NlRequest) => number) {
    if (this.fd < 0) throw new ClosedError("rtnetlink socket");
    const seqs = requests.map(() => this.nextSeq());
    const wire = Buffer.concat(
      requests.map((r, i) => encodeMessage(r.type, NLM_F_REQUEST | flagsOf(r), seqs[i]!, r.body)),
    );
    let datagrams: Buffer[];
    try {
      datagrams = await netlinkAddon().nlTransact(this.fd, wire, this.timeoutMs);
    } catch (e) {
      throw transportFailure(requests.map((r) => r.operation).join("; ") + this.where, e);
    }
    const bySeq = new Map<number, NlMessage[]>(seqs.map((s) => [s, []]));
    for (const d of datagrams) for (const m of decodeMessages(d)) bySeq.get(m.seq)?.push(m);
    return requests.map((r, i) => ({ request: r, messages: bySeq.get(seqs[i]!) ?? [] }));
  }

  /**
   * Sends requests in one sendmsg, each with NLM_F_ACK. The kernel processes every one of them in
   * order, whether or not an earlier one failed, so a caller must not queue a request that is only
   * safe after another succeeded. Resolves with what each request came to.
   */
  settleAll(requests: readonly NlRequest[]): Promise<NlSettled[]> {
    return this.serialize(async () => {
      const results = await this.transact(requests, (r) => r.flags | NLM_F_ACK);
      return results.map(({ request, messages }): NlSettled => {
        const replies: NlMessage[] = [];
        for (const m of messages) {
          if (m.type === NLMSG_ERROR) {
            const err = decodeError(m.payload, m.flags);
            if (err.errno === 0) continue;
            const e = netlinkError(request.operation + this.where, err.errno, err.message);
            const error = request.fail ? request.fail(e) : e;
            if (error !== undefined) return { ok: false, error };
          } else if (m.type !== NLMSG_NOOP && m.type !== NLMSG_DONE) {
            replies.push(m);
          }
        }
        return { ok: true, replies };
      });
    });
  }

  /** Like settleAll, but throws the first failure in request order. */
  async requestAll(requests: readonly NlRequest[]): Promise<NlMessage[][]> {
    const settled = await this.settleAll(requests);
    return settled.map((s) => {
      if (!s.ok) throw s.error;
      return s.replies;
    });
  }

  /** One acked request; resolves with any replies that preceded the ack (e.g. for a GET). */
  async send(request: NlRequest): Promise<NlMessage[]> {
    const [replies] = await this.requestAll([request]);
    return replies ?? [];
  }

  /** send() for a request without an error mapping. */
  request(type: number, flags: number, body: readonly Uint8Array[], operation: string): Promise<NlMessage[]> {
    return this.send({ type, flags, body, operation });
  }

  /** A dump; retried when the kernel flags it as interrupted by a concurrent change. */
  dump(type: number, body: readonly Uint8Array[], operation: string): Promise<NlMessage[]> {
    return this.serialize(async () => {
      for (let attempt = 0; ; attempt++) {
        const [result] = await this.transact(
          [{ type, flags: NLM_F_DUMP, body, operation }],
          () => NLM_F_DUMP,
        );
        const messages = result?.messages ?? [];
        const replies: NlMessage[] = [];
        let interrupted = false;
        for (const m of messages) {
          if (m.flags & NLM_F_DUMP_INTR) interrupted = true;
          if (m.type === NLMSG_ERROR) {
            const err = decodeError(m.payload, m.flags);
            if (err.errno !== 0) throw netlinkError(operation + this.where, err.errno, err.message);
          } else if (m.type === NLMSG_DONE) {
            // A dump that fails part-way reports the error in DONE's payload, then its extack TLVs.
            const status = m.payload.length >= 4 ? m.payload.readInt32LE(0) : 0;
            if (status < 0) {
              const tlvs = m.flags & NLM_F_ACK_TLVS ? decodeAttrs(m.payload.subarray(4)) : undefined;
              const text = tlvs?.get(NLMSGERR_ATTR_MSG)?.toString("utf8").replace(/\0.*$/s, "");
              throw netlinkError(operation + this.where, -status, text || undefined);
            }
          } else if (m.type !== NLMSG_NOOP) {
            replies.push(m);
          }
        }
        if (!interrupted || attempt >= DUMP_RETRIES) return replies;
      }
    });
  }

  /** Closes the socket once queued transactions have finished. */
  async close(): Promise<void> {
    await this.tail;
    if (this.fd < 0) return;
    const fd = this.fd;
    this.fd = -1;
    netlinkAddon().nlClose(fd);
  }
}
