// nkitd's config loader under fuzzing: any YAML text, any decoded value and every one-key mutation of
// a full config is accepted or refused with a ConfigError naming a key (never another exception or a
// hang). What the loader accepts, preflight and nkitd then check against the host (integration tests).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { loadConfig, validateConfig } from "../../src/daemon/config.js";
import { ConfigError } from "../../src/errors.js";
import { acceptsOrRefuses, jsonish, mutated, params } from "./fuzz.js";

const FULL = {
  datapath: "veth",
  podCIDRs: ["10.60.0.0/24", "fd60::/64"],
  uplinks: ["eth0"],
  mtu: 1450,
  bigTcp: false,
  paths: { state: "/tmp/s", run: "/tmp/r", bpffs: "/sys/fs/bpf/x", services: "/tmp/svc", cgroup: "" },
  serviceCIDRs: ["10.97.0.0/16", "fd97::/112"],
  services: [
    {
      name: "web",
      vip: "10.97.0.10",
      ports: [{ port: 80, protocol: "tcp", targetPort: 8080 }],
      backends: ["10.60.0.5:8080"],
    },
  ],
  masquerade: { enabled: true, ipv6: true, nonMasqueradeCIDRs: ["192.168.0.0/16"], portRange: "40000-50000" },
  limits: { services: 1024, backends: 4096, conntrack: 65536, externalFrontends: 128, maglevTableSize: 1021 },
  timeouts: { tcpEstablished: 3600, tcpOpening: 30, tcpClosing: 5, udp: 60 },
  nri: { enabled: false, socket: "/tmp/nri.sock", index: "20" },
  containerd: { socket: "/tmp/containerd.sock" },
  peers: [{ name: "node-b", address: ["192.0.2.2", "2001:db8::2"], podCIDRs: ["10.61.0.0/24", "fd61::/64"] }],
  nomad: {
    address: "http://127.0.0.1:4646",
    cluster: { cidrs: ["10.48.0.0/16", "fd48::/56"], nodeMask: { ipv4: 24, ipv6: 64 }, ttl: 60 },
  },
  log: { level: "debug" },
  metrics: { listen: "127.0.0.1:9965" },
};

const dir = mkdtempSync(join(tmpdir(), "nkit-fuzz-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const refusal = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    // The error names a key (or the file) and says what to do.
    expect(e.key.length).toBeGreaterThan(0);
  }
  return acceptsOrRefuses(fn);
};

describe("config loader (fuzz)", () => {
  it("accepts the full config", () => {
    expect(validateConfig(FULL).nomad.cluster.ttl).toBe(60);
  });

  it("answers any decoded value with a config or a ConfigError", () => {
    fc.assert(
      fc.property(jsonish, (raw) => void refusal(() => validateConfig(raw))),
      params(),
    );
  });

  it("answers every one-key mutation of a full config with a config or a ConfigError", () => {
    fc.assert(
      fc.property(mutated(FULL), (raw) => void refusal(() => validateConfig(raw))),
      params(),
    );
  });

  it("answers any file text with a config or a ConfigError", () => {
    const file = join(dir, "nkitd.yaml");
    const text = fc.oneof(
      fc.string(),
      fc.string({ unit: "binary" }),
      mutated(FULL).map((v) => JSON.stringify(v) ?? ""),
      fc.constantFrom("a: [", "{{", "- - -", "podCIDRs: !!binary AAAA", "*x", "&a [*a]", "paths: {state: ~}"),
    );
    fc.assert(
      fc.property(text, (t) => {
        writeFileSync(file, t);
        refusal(() => loadConfig(file));
      }),
      params(),
    );
  });
});
