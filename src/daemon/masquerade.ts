// Masquerade in nkitd: the `masquerade:` section and each uplink's addresses written into the
// datapath's NAT maps at start and refreshed every 30 s (an uplink that gets a new address by DHCP or
// SLAAC is followed). Pod CIDRs, service CIDRs, the peers' pod CIDRs and the Nomad cluster's CIDRs are
// never masqueraded.
import type { DatapathObjectMaps } from "../bpf/gen/datapath.skel.js";
import type { Conntrack } from "../conntrack/conntrack.js";
import type { Logger } from "../log.js";
import { Masquerade, type NatFlowView } from "../masquerade/masquerade.js";
import { IpAddress, IpPrefix } from "../util/ip.js";
import type { NkitdConfig } from "./config.js";
import { uplinkAddresses } from "./uplinks.js";

const REFRESH_MS = 30_000;

export interface MasqueradeService {
  flows(): NatFlowView[];
  flowCounts(): Record<string, number>;
  /** Applies a changed `masquerade:` section (SIGHUP); flows already translated keep their ports. */
  reconfigure(config: NkitdConfig): Promise<void>;
  /** Re-reads the other nkit hosts' addresses (peers joined or left). */
  refreshPeers(): Promise<void>;
  stop(): void;
}

export async function startMasquerade(
  config: NkitdConfig,
  uplinks: readonly string[],
  maps: DatapathObjectMaps,
  ct: Pick<Conntrack, "entries" | "keys">,
  log: Logger,
  /** The other nkit hosts' addresses (static peers, cluster nodes): they route our pods back. */
  peerAddresses: () => readonly string[] = () => [],
): Promise<MasqueradeService> {
  const nat = Masquerade.open(maps, ct);
  const settingsOf = (c: NkitdConfig) => ({
    ipv4: c.masquerade.enabled,
    ipv6: c.masquerade.enabled && c.masquerade.ipv6,
    portRange: c.masquerade.portRange,
    // Other hosts' pods, and the other hosts themselves, are reached with the pod's own address
    // (direct routes, no NAT): also a pod's answer to a host that opened a flow to it directly.
    exclude: [
      ...c.podCIDRs,
      ...c.serviceCIDRs,
      ...c.peers.flatMap((p) => p.podCIDRs),
      ...c.nomad.cluster.cidrs,
      ...peerAddresses().map((a) => {
        const ip = IpAddress.parse(a);
        return IpPrefix.of(ip, ip.bits).text;
      }),
      ...c.masquerade.nonMasqueradeCIDRs,
    ],
  });
  let settings = settingsOf(config);
  let last = "";
  const apply = async () => {
    const devices = await uplinkAddresses(uplinks);
    nat.apply(settings, devices);
    const now = JSON.stringify(devices);
    if (now !== last)
      log.info({ uplinks: devices, ipv4: settings.ipv4, ipv6: settings.ipv6 }, "masquerade applied");
    last = now;
  };
  await apply();
  const timer = setInterval(() => {
    apply().catch((e: unknown) =>
      log.error({ err: e }, "masquerade: refreshing the uplink addresses failed"),
    );
  }, REFRESH_MS);
  timer.unref();
  return {
    flows: () => nat.flows(),
    flowCounts: () => nat.flowCounts(),
    reconfigure: async (c) => {
      settings = settingsOf(c);
      last = "";
      await apply();
    },
    refreshPeers: async () => {
      settings = settingsOf(config);
      await apply();
    },
    stop: () => {
      clearInterval(timer);
      nat.close();
    },
  };
}
