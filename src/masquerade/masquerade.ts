// The masquerade maps of the datapath (nk_nat_config, nk_nat_devices, nk_nat_exclude; the
// translations themselves live in the conntrack, src/conntrack, and are written by the programs).
// nkitd tells them which families to translate, the port range, the destinations that keep the
// pod's address and, per uplink, the address flows leaving through it get. apply() makes the maps
// say exactly that.
import type { DatapathObjectMaps } from "../bpf/gen/datapath.skel.js";
import type { BpfMap } from "../bpf/map.js";
import { type NatConfig, NatCtDir, type NatDevice, NatFlags } from "../bpf/nat.js";
import { mapAddressText, type PrefixKey, syncPrefixSet } from "../bpf/shared.js";
import type { Conntrack } from "../conntrack/conntrack.js";
import { formatHostPort, IpAddress, IpPrefix } from "../util/ip.js";

interface MasqueradeSettings {
  ipv4: boolean;
  ipv6: boolean;
  /** Inclusive source port range. */
  portRange: readonly [number, number];
  /** Destinations never masqueraded: pod CIDRs, service CIDRs, nonMasqueradeCIDRs. */
  exclude: readonly string[];
}

/** One masqueraded flow as `nkit nat list` shows it. */
export interface NatFlowView {
  protocol: string;
  pod: string;
  translated: string;
  remote: string;
  idleSeconds: number;
}

const PROTOCOL_NAMES: Record<number, string> = { 1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6" };

export interface UplinkAddresses {
  ifindex: number;
  ipv4?: string;
  ipv6?: string;
}

export class Masquerade {
  private constructor(
    private readonly config: BpfMap<number, NatConfig>,
    private readonly devices: BpfMap<number, NatDevice>,
    private readonly exclude: BpfMap<PrefixKey, number>,
    /** Read only: the conntrack's owner (src/conntrack) sets its timeouts and collects it. */
    private readonly ct: Pick<Conntrack, "entries" | "keys">,
  ) {}

  /** Takes its maps from the datapath object's handles (or their pins: pinnedMaps); flows are read from `ct`. */
  static open(
    maps: Pick<DatapathObjectMaps, "nk_nat_config" | "nk_nat_devices" | "nk_nat_exclude">,
    ct: Pick<Conntrack, "entries" | "keys">,
  ): Masquerade {
    const opened: { close(): void }[] = [];
    const take = <T extends { close(): void }>(m: T): T => {
      opened.push(m);
      return m;
    };
    try {
      return new Masquerade(
        take(maps.nk_nat_config),
        take(maps.nk_nat_devices),
        take(maps.nk_nat_exclude),
        ct,
      );
    } catch (e) {
      for (const m of opened) m.close();
      throw e;
    }
  }

  apply(s: MasqueradeSettings, uplinks: readonly UplinkAddresses[]): void {
    // Exclusions and devices first, the switch last: a flow is never translated by half a setting.
    syncPrefixSet(
      this.exclude,
      s.exclude.map((c) => IpPrefix.parse(c)),
    );
    const seen = new Set<number>();
    for (const u of uplinks) {
      const addr4 = u.ipv4 ? IpAddress.parse(u.ipv4).toBytes() : Buffer.alloc(4);
      const addr6 = u.ipv6 ? IpAddress.parse(u.ipv6).toBytes() : Buffer.alloc(16);
      const flags = (u.ipv4 ? NatFlags.V4 : 0) | (u.ipv6 ? NatFlags.V6 : 0);
      this.devices.update(u.ifindex, { flags, addr4, addr6 });
      seen.add(u.ifindex);
    }
    for (const k of [...this.devices.keys()]) if (!seen.has(k)) this.devices.delete(k);
    const flags = (s.ipv4 ? NatFlags.V4 : 0) | (s.ipv6 ? NatFlags.V6 : 0);
    this.config.update(0, { flags, port_min: s.portRange[0], port_max: s.portRange[1] });
  }

  /** The translated flows, most recently used first (idle = since the last packet from the pod). */
  flows(): NatFlowView[] {
    // bpf_ktime_get_ns and process.hrtime both read CLOCK_MONOTONIC.
    const now = process.hrtime.bigint();
    const out: NatFlowView[] = [];
    for (const [k, v] of this.ct.entries()) {
      if (k.dir !== NatCtDir.OUT) continue;
      out.push({
        protocol: PROTOCOL_NAMES[k.proto] ?? String(k.proto),
        pod: formatHostPort(mapAddressText(k.family, k.saddr), k.sport),
        translated: formatHostPort(mapAddressText(v.family, v.addr), v.port),
        remote: formatHostPort(mapAddressText(k.family, k.daddr), k.dport),
        idleSeconds: Number(now - v.last_seen_ns) / 1e9,
      });
    }
    return out.sort((a, b) => a.idleSeconds - b.idleSeconds);
  }

  /** Translated flows by protocol name, from the conntrack keys alone (what metrics need). */
  flowCounts(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const k of this.ct.keys()) {
      if (k.dir !== NatCtDir.OUT) continue;
      const name = PROTOCOL_NAMES[k.proto] ?? String(k.proto);
      out[name] = (out[name] ?? 0) + 1;
    }
    return out;
  }

  close(): void {
    this.config.close();
    this.devices.close();
    this.exclude.close();
  }
}
