// The one owner of the conntrack the datapath's translations share (nk_lb_ct: per-packet
// load-balanced flows in directions FORWARD/REVERSE, masqueraded ones in SNAT_OUT/SNAT_IN) and of
// its idle timeouts (nk_ct_config, which the programs read). The programs create and refresh the
// entries; nkitd sets the timeouts and collects what went idle, so ports and slots are free before
// the LRU would evict them. Masquerade reads its flows through here.
import type { DatapathObjectMaps } from "../bpf/gen/datapath.skel.js";
import {
  CT_TIMEOUT_NS,
  type CtConfig,
  type CtTimeouts,
  ctTimeoutNs,
  type LbCt,
  type LbCtKey,
} from "../bpf/lb.js";
import type { BpfMap } from "../bpf/map.js";

export type { CtTimeouts } from "../bpf/lb.js";

export class Conntrack {
  private timeouts: CtTimeouts = CT_TIMEOUT_NS;

  private constructor(
    private readonly ct: BpfMap<LbCtKey, LbCt>,
    private readonly config: BpfMap<number, CtConfig>,
  ) {}

  /** Takes its maps from the datapath object's handles (or their pins: pinnedMaps). */
  static open(maps: Pick<DatapathObjectMaps, "nk_lb_ct" | "nk_ct_config">): Conntrack {
    const ct = maps.nk_lb_ct;
    try {
      return new Conntrack(ct, maps.nk_ct_config);
    } catch (e) {
      ct.close();
      throw e;
    }
  }

  /** The idle timeouts the programs and the collector apply from now on. */
  setTimeouts(t: CtTimeouts = CT_TIMEOUT_NS): void {
    this.timeouts = t;
    this.config.update(0, {
      tcp_established_ns: t.tcpEstablished,
      tcp_opening_ns: t.tcpOpening,
      tcp_closing_ns: t.tcpClosing,
      other_ns: t.other,
    });
  }

  /** Every entry, both directions of every kind. */
  entries(): IterableIterator<[LbCtKey, LbCt]> {
    return this.ct.entries();
  }

  keys(): IterableIterator<LbCtKey> {
    return this.ct.keys();
  }

  /**
   * Deletes the entries (masquerade and load-balancer) idle past their timeout. An entry the
   * datapath used since it was read is kept. Returns how many went.
   */
  collect(now = process.hrtime.bigint()): number {
    let n = 0;
    for (const [k, v] of [...this.ct.entries()]) {
      if (now - v.last_seen_ns < ctTimeoutNs(k.proto, v.flags, this.timeouts)) continue;
      const again = this.ct.lookup(k);
      if (!again || now - again.last_seen_ns < ctTimeoutNs(k.proto, again.flags, this.timeouts)) continue;
      if (this.ct.delete(k)) n++;
    }
    return n;
  }

  close(): void {
    this.ct.close();
    this.config.close();
  }
}
