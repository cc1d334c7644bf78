// Host ports from CNI portMappings (`-p 8080:80`, CRI hostPort): each mapping becomes frontends on
// the host's addresses (hostIP, or every host address plus loopback when hostIP is empty) whose one
// backend is the pod's address and container port. They are services of source "host-port" owned
// by their container, so they go away with it, and a host port another container holds is refused
// with that container named: a second ADD fails instead of silently stealing the port.
import { AlreadyExistsError, InvalidArgumentError } from "../errors.js";
import { IpAddress, type IpFamily } from "../util/ip.js";
import type { ServiceManager } from "./manager.js";
import { DEFAULT_AFFINITY_TIMEOUT_SECONDS, type ServiceSpec } from "./spec.js";

interface HostPortMapping {
  hostPort: number;
  containerPort: number;
  protocol: string;
  /** "", absent, "0.0.0.0" or "::": every host address and loopback, both families. */
  hostIP?: string;
}

interface HostPortsOptions {
  manager: ServiceManager;
  /** The host's own addresses now (both families), without loopback. */
  hostAddresses: () => readonly string[];
}

const LOOPBACK: Record<IpFamily, IpAddress> = {
  4: IpAddress.parse("127.0.0.1"),
  6: IpAddress.parse("::1"),
};

/** Service names allow a-z 0-9 . _ -: a frontend's address with ":" spelled "-". */
const nameOf = (protocol: string, hostPort: number, address: IpAddress): string =>
  `hostport.${protocol}.${hostPort}.${address.text.replaceAll(":", "-")}`;

export class HostPorts {
  /** What each holder claimed, to lay its wildcard ports out again when the host's addresses change. */
  private readonly claims = new Map<
    string,
    { mappings: readonly HostPortMapping[]; pod: { ipv4?: string; ipv6?: string } }
  >();

  constructor(private readonly opts: HostPortsOptions) {}

  /** The services a container's mappings make, one per frontend address. */
  specs(mappings: readonly HostPortMapping[], pod: { ipv4?: string; ipv6?: string }): ServiceSpec[] {
    const specs = new Map<string, ServiceSpec>();
    const hostAddresses = this.opts.hostAddresses();
    for (const [i, m] of mappings.entries()) {
      const protocol = m.protocol.toLowerCase();
      if (protocol !== "tcp" && protocol !== "udp") {
        throw new InvalidArgumentError(
          `portMappings[${i}]: protocol ${m.protocol} is not supported; use tcp or udp`,
        );
      }
      const hostIP = m.hostIP ? IpAddress.parse(m.hostIP) : undefined;
      let frontends: IpAddress[];
      // A hostIP that names no one address (absent, 0.0.0.0, ::) publishes on every host address.
      if (hostIP && !hostIP.isUnspecified) {
        const family = hostIP.family;
        if (!(family === 4 ? pod.ipv4 : pod.ipv6)) {
          throw new InvalidArgumentError(
            `portMappings[${i}]: hostIP ${m.hostIP} is IPv${family} but the pod has no IPv${family} address`,
          );
        }
        frontends = [hostIP];
      } else {
        frontends = [...hostAddresses.map((a) => IpAddress.parse(a)), LOOPBACK[4], LOOPBACK[6]].filter(
          (a) => (a.family === 4 ? pod.ipv4 : pod.ipv6) !== undefined,
        );
      }
      for (const vip of frontends) {
        const family = vip.family;
        const backend = (family === 4 ? pod.ipv4 : pod.ipv6) ?? "";
        const name = nameOf(protocol, m.hostPort, vip);
        // "0.0.0.0" and "::" of one port (Docker-style dual publishing) name the same frontends.
        const seen = specs.get(name);
        if (seen) {
          if (seen.ports[0]?.targetPort === m.containerPort) continue;
          throw new InvalidArgumentError(
            `portMappings[${i}]: host port ${m.hostPort}/${protocol} on ${vip.text} is mapped twice, to container ports ${seen.ports[0]?.targetPort} and ${m.containerPort}`,
          );
        }
        specs.set(name, {
          name,
          vip: vip.text,
          family,
          ports: [{ port: m.hostPort, protocol, targetPort: m.containerPort }],
          backends: [{ address: backend }],
          affinity: "none",
          affinityTimeoutSeconds: DEFAULT_AFFINITY_TIMEOUT_SECONDS,
          // Loopback is reached only from this host, always through the socket hooks.
          ...(vip.equals(LOOPBACK[family]) ? {} : { external: true }),
        });
      }
    }
    return [...specs.values()];
  }

  /**
   * Programs a container's host ports, all or none: a port another container (or a service) holds
   * fails the whole claim, naming the holder, and leaves what was there.
   */
  claim(
    containerId: string,
    mappings: readonly HostPortMapping[],
    pod: { ipv4?: string; ipv6?: string },
  ): void {
    const specs = this.specs(mappings, pod);
    for (const s of specs) {
      const held = this.opts.manager.get(s.name);
      if (held && held.origin !== containerId) {
        const p = s.ports[0];
        throw new AlreadyExistsError(
          `host port ${p?.port}/${p?.protocol} on ${s.vip} is already mapped by container ${held.origin}; pick another host port`,
        );
      }
    }
    const before = this.opts.manager
      .list()
      .filter((v) => v.source === "host-port" && v.origin === containerId);
    const failed = this.opts.manager.replaceSource("host-port", specs, containerId);
    if (failed.length > 0) {
      this.opts.manager.replaceSource(
        "host-port",
        before.map((v) => v.spec),
        containerId,
      );
      throw failed[0]?.error ?? new AlreadyExistsError("host port already taken");
    }
    this.claims.set(containerId, { mappings: [...mappings], pod: { ...pod } });
  }

  release(containerId: string): void {
    this.claims.delete(containerId);
    this.opts.manager.replaceSource("host-port", [], containerId);
  }

  /**
   * Lays every claim out again on the host's addresses as they are now: a port published on every
   * address (`-p 8080:80`) follows an address added or removed after it was claimed. A claim that
   * no longer fits (another holder took a port on a new address) keeps what it had.
   */
  readdress(): { containerId: string; error: Error }[] {
    const failed: { containerId: string; error: Error }[] = [];
    for (const [containerId, c] of this.claims) {
      try {
        this.claim(containerId, c.mappings, c.pod);
      } catch (e) {
        failed.push({ containerId, error: e as Error });
      }
    }
    return failed;
  }

  /** Containers holding host ports now. */
  holders(): string[] {
    return [
      ...new Set(
        this.opts.manager
          .list()
          .filter((v) => v.source === "host-port")
          .map((v) => v.origin),
      ),
    ];
  }
}
