import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { defaultConfig, loadConfig, validateConfig } from "../../src/daemon/config.js";
import { ConfigError } from "../../src/errors.js";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "nkit-cfg-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function errorOf(raw: unknown): ConfigError {
  try {
    validateConfig(raw);
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error("expected a ConfigError");
}

describe("nkitd config", () => {
  it("runs on built-in defaults without a file", () => {
    expect(validateConfig(undefined)).toEqual(defaultConfig());
    expect(loadConfig(undefined).podCIDRs).toEqual(["10.47.0.0/24", "fd47::/64"]);
  });

  it("reads the documented keys from YAML", () => {
    const file = join(dir, "nkitd.yaml");
    writeFileSync(
      file,
      [
        "datapath: veth",
        'podCIDRs: [10.60.0.0/24, "fd60::/64"]',
        "uplinks: [eth0]",
        "mtu: 1450",
        "bigTcp: false",
        "flowSteering: false",
        "paths: {state: /tmp/s, run: /tmp/r, bpffs: /sys/fs/bpf/x, services: /tmp/svc, cgroup: /sys/fs/cgroup/unified/nk}",
        'serviceCIDRs: [10.97.0.0/16, "fd97::/112"]',
        "services:",
        "  - name: web",
        "    vip: 10.97.0.10",
        "    ports: [{port: 80, protocol: tcp, targetPort: 8080}]",
        '    backends: ["10.60.0.5:8080", "10.60.0.6"]',
        "    affinity: client-ip",
        'masquerade: {enabled: true, ipv6: true, nonMasqueradeCIDRs: [192.168.0.0/16, "fd00::/8"], portRange: "40000-50000"}',
        "limits: {services: 1024, backends: 4096, conntrack: 65536, externalFrontends: 128, maglevTableSize: 1021}",
        "timeouts: {tcpEstablished: 3600, tcpOpening: 30, tcpClosing: 5, udp: 60}",
        "nri: {enabled: false, socket: /tmp/nri.sock, index: 20}",
        "containerd: {socket: /tmp/containerd.sock}",
        'peers: [{name: node-b, address: [192.0.2.2, "2001:db8::2"], podCIDRs: [10.61.0.0/24, "fd61::/64"]}, {name: node-c, address: 192.0.2.3, podCIDRs: [10.62.0.0/24]}]',
        'nomad: {address: "http://127.0.0.1:4646", tokenFile: /etc/nkit/nomad.token, cluster: {cidrs: [10.48.0.0/16, "fd48::/56"], nodeMask: {ipv4: 26}, nodeName: node-a, address: [192.0.2.1], ttl: 600}}',
        "log: {level: debug}",
        'metrics: {listen: "127.0.0.1:9965"}',
      ].join("\n"),
    );
    const c = loadConfig(file);
    expect(c).toEqual({
      datapath: "veth",
      podCIDRs: ["10.60.0.0/24", "fd60::/64"],
      uplinks: ["eth0"],
      mtu: 1450,
      bigTcp: false,
      flowSteering: false,
      paths: {
        state: "/tmp/s",
        run: "/tmp/r",
        bpffs: "/sys/fs/bpf/x",
        services: "/tmp/svc",
        cgroup: "/sys/fs/cgroup/unified/nk",
      },
      serviceCIDRs: ["10.97.0.0/16", "fd97::/112"],
      services: [
        {
          name: "web",
          vip: "10.97.0.10",
          family: 4,
          ports: [{ port: 80, protocol: "tcp", targetPort: 8080 }],
          backends: [{ address: "10.60.0.5", port: 8080 }, { address: "10.60.0.6" }],
          affinity: "client-ip",
          affinityTimeoutSeconds: 10800,
        },
      ],
      masquerade: {
        enabled: true,
        ipv6: true,
        nonMasqueradeCIDRs: ["192.168.0.0/16", "fd00::/8"],
        portRange: [40000, 50000],
      },
      limits: {
        services: 1024,
        backends: 4096,
        conntrack: 65536,
        externalFrontends: 128,
        maglevTableSize: 1021,
      },
      timeouts: { tcpEstablished: 3600, tcpOpening: 30, tcpClosing: 5, udp: 60 },
      nri: { enabled: false, socket: "/tmp/nri.sock", index: "20" },
      containerd: { socket: "/tmp/containerd.sock" },
      peers: [
        { name: "node-b", address: ["192.0.2.2", "2001:db8::2"], podCIDRs: ["10.61.0.0/24", "fd61::/64"] },
        { name: "node-c", address: ["192.0.2.3"], podCIDRs: ["10.62.0.0/24"] },
      ],
      nomad: {
        address: "http://127.0.0.1:4646",
        token: "",
        tokenFile: "/etc/nkit/nomad.token",
        namespace: "*",
        cluster: {
          cidrs: ["10.48.0.0/16", "fd48::/56"],
          nodeMask: { ipv4: 26, ipv6: 64 },
          nodeName: "node-a",
          address: ["192.0.2.1"],
          variable: "nkit/cluster",
          ttl: 600,
        },
      },
      log: { level: "debug" },
      metrics: { listen: "127.0.0.1:9965" },
    });
  });

  it("names the key, the bad value and the fix", () => {
    const cases: [unknown, string, RegExp][] = [
      [{ datapath: "fast" }, "datapath", /"fast" is not a datapath mode; use auto, netkit or veth/],
      [{ podCIDRs: ["10.0.0.1/24"] }, "podCIDRs[0]", /did you mean 10.0.0.0\/24/],
      [{ podCIDRs: ["10.0.0.0/24", "10.1.0.0/24"] }, "podCIDRs[1]", /at most one CIDR per family/],
      [{ mtu: 100 }, "mtu", /100 is not a usable MTU; use 0/],
      [
        { masquerade: { portRange: "100-200" } },
        "masquerade.portRange",
        /is not a port range; use "LOW-HIGH" within 1024-65535/,
      ],
      [{ masquerade: { portRange: "50000-40000" } }, "masquerade.portRange", /is not a port range/],
      [{ masquerade: { ipv6: "yes" } }, "masquerade.ipv6", /expected true or false/],
      [{ masquerade: { nonMasqueradeCIDRs: ["10.0.0.0/33"] } }, "masquerade.nonMasqueradeCIDRs[0]", /prefix/],
      [{ masquerade: { snat: true } }, "masquerade.snat", /unknown key/],
      [{ paths: { state: "relative" } }, "paths.state", /not an absolute path/],
      [
        { paths: { stat: "/x" } },
        "paths.stat",
        /unknown key; remove it; known keys here: state, run, bpffs, services, cgroup/,
      ],
      [{ paths: { cgroup: "unified" } }, "paths.cgroup", /not an absolute path/],
      [{ serviceCIDRs: ["10.47.0.0/16"] }, "serviceCIDRs[0]", /overlaps the pod CIDR 10\.47\.0\.0\/24/],
      [{ services: {} }, "services", /expected a list/],
      [
        { services: [{ name: "a", vip: "10.96.0.1", ports: [{ port: 99999 }] }] },
        "services[0].ports[0].port",
        /99999 is not a port; use 1..65535/,
      ],
      [
        { services: [{ name: "a", vip: "10.47.0.9", ports: [{ port: 80 }] }] },
        "services[0].vip",
        /lies in the pod CIDR 10\.47\.0\.0\/24/,
      ],
      [
        {
          services: [
            { name: "a", vip: "10.96.0.1", ports: [{ port: 80 }] },
            { name: "a", vip: "10.96.0.2", ports: [{ port: 80 }] },
          ],
        },
        "services[1].name",
        /used twice/,
      ],
      [
        {
          services: [
            { name: "a", vip: "10.96.0.1", ports: [{ port: 80 }] },
            { name: "b", vip: "10.96.0.1", ports: [{ port: 80 }] },
          ],
        },
        "services[1]",
        /10\.96\.0\.1:80\/tcp is already the frontend of a/,
      ],
      [{ colour: true }, "colour", /unknown key/],
      [{ log: { level: "loud" } }, "log.level", /not a log level/],
      [{ metrics: { listen: "nowhere" } }, "metrics.listen", /not host:port/],
      [{ bigTcp: "yes" }, "bigTcp", /expected true or false/],
      [
        { limits: { maglevTableSize: 1000 } },
        "limits.maglevTableSize",
        /1000 is not one of the Maglev primes; use one of 251, 509, 1021/,
      ],
      [
        { limits: { conntrack: 10 } },
        "limits.conntrack",
        /10 is not a count of entries; use a whole number 1024\.\./,
      ],
      [{ limits: { services: 1.5 } }, "limits.services", /not a count of frontends/],
      [
        { limits: { backend: 10 } },
        "limits.backend",
        /unknown key; remove it; known keys here: services, backends/,
      ],
      [
        { timeouts: { udp: 0 } },
        "timeouts.udp",
        /0 is not a count of seconds; use a whole number 1\.\.604800/,
      ],
      [{ timeouts: { tcpOpening: "1m" } }, "timeouts.tcpOpening", /not a count of seconds/],
      [{ peers: {} }, "peers", /expected a list/],
      [
        { nomad: { cluster: { cidrs: ["10.48.0.0/16"] } } },
        "nomad.cluster.cidrs",
        /nomad\.address is empty; give nomad\.address/,
      ],
      [
        { nomad: { address: "http://x:4646", cluster: { cidrs: ["10.48.0.0/16", "10.49.0.0/16"] } } },
        "nomad.cluster.cidrs[1]",
        /a second IPv4 CIDR/,
      ],
      [
        { nomad: { address: "http://x:4646", cluster: { cidrs: ["10.48.0.0/24"], nodeMask: { ipv4: 20 } } } },
        "nomad.cluster.nodeMask.ipv4",
        /\/20 is wider than the cluster CIDR 10\.48\.0\.0\/24/,
      ],
      [
        { nomad: { address: "http://x:4646", cluster: { cidrs: ["10.96.0.0/12"] } } },
        "nomad.cluster.cidrs[0]",
        /overlaps the service CIDR 10\.96\.0\.0\/16/,
      ],
      [
        {
          peers: [{ name: "b", address: "192.0.2.2", podCIDRs: ["10.48.1.0/24"] }],
          nomad: { address: "http://x:4646", cluster: { cidrs: ["10.48.0.0/16"] } },
        },
        "nomad.cluster.cidrs[0]",
        /overlaps the pod CIDR of peer b; static peers need pod CIDRs outside the cluster CIDRs/,
      ],
      [{ nomad: { cluster: { nodeName: "Node_A" } } }, "nomad.cluster.nodeName", /not a node name/],
      [{ nomad: { cluster: { ttl: -1 } } }, "nomad.cluster.ttl", /not a count of seconds/],
      [
        { peers: [{ name: "b", address: "nope", podCIDRs: ["10.48.1.0/24"] }] },
        "peers[0].address",
        /IP address/,
      ],
      [
        { peers: [{ name: "B_1", address: "192.0.2.2", podCIDRs: ["10.48.1.0/24"] }] },
        "peers[0].name",
        /not a node name/,
      ],
      [
        { peers: [{ name: "b", address: "192.0.2.2", podCIDRs: [] }] },
        "peers[0].podCIDRs",
        /one or two CIDRs/,
      ],
      [
        { peers: [{ name: "b", address: "192.0.2.2", podCIDRs: ["10.48.1.0/24", "fd48:1::/64"] }] },
        "peers[0].address",
        /has no IPv6 address for the pod CIDR fd48:1::\/64; add the peer's IPv6 address/,
      ],
      [
        { peers: [{ name: "b", address: "192.0.2.2", podCIDRs: ["10.47.0.128/25"] }] },
        "peers[0].podCIDRs",
        /overlaps this host's pod CIDR 10\.47\.0\.0\/24/,
      ],
      [
        {
          peers: [
            { name: "b", address: "192.0.2.2", podCIDRs: ["10.48.1.0/24"] },
            { name: "c", address: "192.0.2.3", podCIDRs: ["10.48.1.0/25"] },
          ],
        },
        "peers[1].podCIDRs",
        /overlaps the pod CIDR of peer b/,
      ],
      [
        {
          peers: [
            { name: "b", address: "192.0.2.2", podCIDRs: ["10.48.1.0/24"] },
            { name: "b", address: "192.0.2.3", podCIDRs: ["10.48.2.0/24"] },
          ],
        },
        "peers[1].name",
        /used twice/,
      ],
      [
        { peers: [{ name: "b", address: "192.0.2.2", podCIDRs: ["10.48.1.0/24"], zone: 1 }] },
        "peers[0].zone",
        /unknown key/,
      ],
    ];
    for (const [raw, key, msg] of cases) {
      const e = errorOf(raw);
      expect(e.key).toBe(key);
      expect(e.code).toBe("NKIT_CONFIG");
      expect(e.message).toMatch(msg);
    }
  });

  it("reports unreadable files and YAML syntax errors", () => {
    expect(() => loadConfig(join(dir, "missing.yaml"))).toThrow(/cannot read/);
    const bad = join(dir, "bad.yaml");
    writeFileSync(bad, "datapath: [unclosed\n");
    expect(() => loadConfig(bad)).toThrow(/not valid YAML/);
    // Found by the config fuzz target: an alias inside its own anchor decodes to a cyclic value.
    const cyclic = join(dir, "cyclic.yaml");
    writeFileSync(cyclic, "peers: &a [*a]\n");
    expect(() => loadConfig(cyclic)).toThrow(ConfigError);
    expect(() => loadConfig(cyclic)).toThrow(/refers to itself: a YAML alias/);
  });
});
