// CNI network configurations for e2e tests. A conflist is either a plain object or a function of the
// instance's paths (so it can point host-local's dataDir, a plugin's socket, … into the private temp dir).
import type { InstancePaths } from "./config.js";

export type JsonObject = { [key: string]: JsonValue };
export type JsonValue = string | number | boolean | null | JsonValue[] | JsonObject;

export interface Conflist extends JsonObject {
  cniVersion: string;
  name: string;
  plugins: JsonObject[];
}

export interface ConflistFile {
  /** File name in the CNI conf dir, e.g. "10-e2e.conflist". containerd picks the first by name. */
  file: string;
  config: Conflist | ((paths: InstancePaths) => Conflist);
}

export interface BridgeNetworkOptions {
  /** Network name: unique per test run (host-local keys its store and libcni its cache on it). */
  name: string;
  /** Bridge device (≤ 15 chars, unique; the harness deletes it at teardown). */
  bridge: string;
  /** Private IPv4 subnet, e.g. "10.213.7.0/24". */
  subnet: string;
  /** host-local's dataDir; defaults to paths.cniDataDir when used through bridgeConflistFile. */
  dataDir: string;
  cniVersion?: string;
}

/**
 * The stock `bridge` + `host-local` network: a private bridge, no gateway and no masquerading, so it
 * changes nothing on the host besides the bridge and the veths (no ip_forward, no iptables).
 */
export function bridgeConflist(o: BridgeNetworkOptions): Conflist {
  return {
    cniVersion: o.cniVersion ?? "1.0.0",
    name: o.name,
    plugins: [
      {
        type: "bridge",
        bridge: o.bridge,
        isGateway: false,
        ipMasq: false,
        hairpinMode: false,
        ipam: { type: "host-local", ranges: [[{ subnet: o.subnet }]], dataDir: o.dataDir },
      },
    ],
  };
}

export function bridgeConflistFile(
  o: Omit<BridgeNetworkOptions, "dataDir">,
  file = "10-e2e-bridge.conflist",
): ConflistFile {
  return { file, config: (p) => bridgeConflist({ ...o, dataDir: `${p.cniDataDir}/${o.name}` }) };
}

/** Bridge device names a conflist asks the `bridge` plugin to create (removed at teardown). */
export function bridgesIn(conf: Conflist): string[] {
  const out: string[] = [];
  for (const p of conf.plugins) {
    if (p.type === "bridge" && typeof p.bridge === "string") out.push(p.bridge);
  }
  return out;
}
