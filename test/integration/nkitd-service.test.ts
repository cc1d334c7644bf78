// nkitd as a host service: with no config file at all it starts on the built-in defaults, finds its
// uplink from the default route, serves the gRPC API and stops cleanly on SIGTERM; a bad config
// exits 2 with a message naming the key and the fix.
//
// The no-config run happens inside a throwaway netns (nsenter --net keeps bpffs and the filesystem
// of the host), so "the devices holding a default route" is a veth this test made, never the host's.

import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type * as T from "../../src/api/types.js";
import { DEFAULT_CONFIG_PATH, defaultConfig } from "../../src/daemon/config.js";
import { createTestCgroup } from "../helpers/cgroup.js";
import { uniqueIfName } from "../helpers/names.js";
import { createNetns } from "../helpers/netns.js";
import { Nkitd, nkitdDirs, nkitJson, pinnedLink, requireDist } from "../helpers/nkitd.js";
import { Scope } from "../helpers/scope.js";
import { inNetns, ipJson } from "../helpers/sys.js";

/** nkitd's path flags for a test's own dirs. */
const dirFlags = (dirs: { dir: string; stateDir: string; runDir: string; bpffsDir: string }) => [
  "--state-dir",
  dirs.stateDir,
  "--run-dir",
  dirs.runDir,
  "--bpffs-dir",
  dirs.bpffsDir,
  "--services-dir",
  join(dirs.dir, "services.d"),
];

let scope: Scope;
beforeAll(() => requireDist());
beforeEach(() => {
  scope = new Scope();
});
afterEach(() => scope.close());

describe("nkitd without a config file", () => {
  it("starts on the defaults, takes the default-route device as uplink, serves the API, exits 0 on SIGTERM", async () => {
    // Without --config nkitd reads the default path; this test must not run on a host that has one.
    if (existsSync(DEFAULT_CONFIG_PATH)) {
      throw new Error(
        `${DEFAULT_CONFIG_PATH} exists on this host: the no-config test would run nkitd on it; ` +
          "run this test on a host without an nkitd config (it is left untouched)",
      );
    }
    // The defaults enable NRI on this socket: never register with a runtime on the test host.
    const nriSocket = defaultConfig().nri.socket;
    if (existsSync(nriSocket)) {
      throw new Error(
        `${nriSocket} exists on this host: nkitd on its defaults would register with that runtime; ` +
          "run this test on a host without a containerd NRI socket at the default path",
      );
    }

    const ns = await createNetns(scope, "nocfg");
    const uplink = uniqueIfName("u");
    const peer = `${uplink}p`;
    await inNetns(ns.path, "ip", ["link", "add", uplink, "type", "veth", "peer", "name", peer]);
    await inNetns(ns.path, "ip", ["addr", "add", "192.0.2.1/24", "dev", uplink]);
    await inNetns(ns.path, "ip", ["addr", "add", "192.0.2.2/24", "dev", peer]);
    await inNetns(ns.path, "ip", ["link", "set", uplink, "up"]);
    await inNetns(ns.path, "ip", ["link", "set", peer, "up"]);
    await inNetns(ns.path, "ip", ["route", "add", "default", "via", "192.0.2.2", "dev", uplink]);

    const dirs = nkitdDirs(scope, "nocfg");
    const d = await Nkitd.start(
      scope,
      [...dirFlags(dirs), "--cgroup", createTestCgroup(scope, "nocfg")],
      ns.path,
    );
    const ready = d.log("datapath ready");
    expect(ready, d.output()).toMatchObject({
      mode: "veth",
      uplinks: [uplink],
      podCIDRs: ["10.47.0.0/24", "fd47::/64"],
      endpoints: 0,
    });
    // The uplink program is attached to the netns's veth and pinned under the flag's bpffs dir.
    const pin = join(dirs.bpffsDir, "uplinks", uplink, "from-uplink");
    const [dev] = await ipJson<{ ifindex: number }[]>(["link", "show", "dev", uplink], ns.name);
    expect(pinnedLink(pin)).toMatchObject({
      ifindex: dev?.ifindex,
      attachPoint: "tcx-ingress",
      attached: true,
    });

    const s = await nkitJson<T.StatusResponse & { pools: { cidr: string; family: number }[] }>(
      join(dirs.runDir, "nkit.sock"),
      "status",
    );
    expect(s.datapathMode).toBe("veth");
    expect(s.pools.map((p) => p.cidr)).toEqual(["10.47.0.0/24", "fd47::/64"]);
    expect(s.uplinks).toEqual([uplink]);
    expect(s.pid).toBe(d.pid);
    expect(s.endpointCount).toBe(0);
    expect(s.stateDir).toBe(dirs.stateDir);
    expect(s.bpffsDir).toBe(dirs.bpffsDir);
    expect(s.metricsListen).toBe("");

    const exit = await d.stop("SIGTERM");
    expect(exit.code, d.output()).toBe(0);
    expect(d.log("stopping control plane; the datapath keeps forwarding")).toBeDefined();
    expect(existsSync(join(dirs.runDir, "nkit.sock"))).toBe(false);
    expect(existsSync(join(dirs.stateDir, "nkitd.pid"))).toBe(false);
  });
});

describe("nkitd with a bad config", () => {
  const cases: { name: string; yaml: string[]; message: RegExp }[] = [
    {
      name: "podCIDRs with host bits",
      yaml: ['podCIDRs: [10.47.0.1/24, "fd47::/64"]'],
      message:
        /config key "podCIDRs\[0\]": "10\.47\.0\.1\/24" has host bits set: did you mean 10\.47\.0\.0\/24\?/,
    },
    {
      name: "an unknown nested key",
      yaml: ["paths: {stat: /var/lib/nkit}"],
      message:
        /config key "paths\.stat": unknown key; remove it; known keys here: state, run, bpffs, services, cgroup/,
    },
    {
      name: "a wrong type",
      yaml: ["nri: {enabled: yes please}"],
      message: /config key "nri\.enabled": expected true or false, got "yes please"; use true or false/,
    },
    {
      name: "a relative path",
      yaml: ["paths: {state: var/lib/nkit}"],
      message:
        /config key "paths\.state": "var\/lib\/nkit" is not an absolute path; give a path starting with \//,
    },
    {
      name: "a missing --config file",
      yaml: [],
      message: /config key "--config": cannot read .*absent\.yaml.*; check the path/,
    },
  ];
  it.each(cases)("$name: exit 2, names the key and the fix", async ({ yaml, message }) => {
    const dirs = nkitdDirs(scope, "badcfg");
    const file = join(dirs.dir, yaml.length ? "nkitd.yaml" : "absent.yaml");
    if (yaml.length) writeFileSync(file, `${yaml.join("\n")}\n`);
    const d = Nkitd.spawn(scope, [
      "--config",
      file,
      "--state-dir",
      dirs.stateDir,
      "--run-dir",
      dirs.runDir,
      "--bpffs-dir",
      dirs.bpffsDir,
    ]);
    const exit = await d.proc.done;
    expect(exit.code, d.output()).toBe(2);
    expect(exit.stderr).toMatch(message);
    // Nothing was started: no state dir, no socket.
    expect(existsSync(dirs.stateDir)).toBe(false);
    expect(existsSync(dirs.runDir)).toBe(false);
  });
});

describe("nkitd with paths, devices or addresses it cannot use", () => {
  // Found by mutating configs: each once crashed with a stack trace (exit 1) or hung.
  const cases: { name: string; flags: (d: { dir: string; file: string }) => string[]; message: RegExp }[] = [
    {
      name: "paths.run too long for a unix socket",
      flags: (d) => ["--run-dir", join(d.dir, "r".repeat(100))],
      message: /config key "paths\.run": .* is too long for unix sockets/,
    },
    {
      name: "paths.state is a file",
      flags: (d) => ["--state-dir", d.file],
      message: /config key "paths\.state": .* exists and is not a directory/,
    },
    {
      name: "paths.state is /dev/null",
      flags: () => ["--state-dir", "/dev/null"],
      message: /config key "paths\.state": \/dev\/null exists and is not a directory/,
    },
    {
      name: "paths.run under /proc (once a hang)",
      flags: () => ["--run-dir", "/proc/nope"],
      message: /config key "paths\.run": \/proc\/nope lies in \/proc/,
    },
    {
      name: "paths.bpffs with a name longer than 255 bytes",
      flags: () => ["--bpffs-dir", `/sys/fs/bpf/${"b".repeat(300)}`],
      message: /config key "paths\.bpffs": a component of .* is longer than 255 bytes/,
    },
    {
      name: "an uplink the host does not have",
      flags: (d) => ["--config", join(d.dir, "uplink.yaml")],
      message: /config key "uplinks\[0\]": this host has no network device nktnosuchdev0/,
    },
    {
      name: "metrics.listen on an address the host does not have",
      flags: (d) => ["--config", join(d.dir, "metrics.yaml")],
      message: /config key "metrics\.listen": cannot listen on 192\.0\.2\.123:9965: EADDRNOTAVAIL/,
    },
  ];
  it.each(cases)("$name: exit 2 naming the key, nothing left behind", async ({ flags, message }) => {
    const dirs = nkitdDirs(scope, "badpath");
    const file = join(dirs.dir, "a-file");
    writeFileSync(file, "");
    writeFileSync(join(dirs.dir, "uplink.yaml"), "uplinks: [nktnosuchdev0]\n");
    writeFileSync(join(dirs.dir, "metrics.yaml"), 'metrics: {listen: "192.0.2.123:9965"}\n');
    const args = dirFlags(dirs);
    const own = flags({ dir: dirs.dir, file });
    const config = own.includes("--config") ? [] : ["--config", join(dirs.dir, "empty.yaml")];
    writeFileSync(join(dirs.dir, "empty.yaml"), "{}\n");
    const d = Nkitd.spawn(scope, [...config, ...args, ...own]);
    const exit = await d.proc.done;
    expect(exit.code, d.output()).toBe(2);
    expect(exit.stderr).toMatch(message);
    expect(existsSync(dirs.stateDir)).toBe(false);
    expect(existsSync(dirs.runDir)).toBe(false);
    expect(existsSync(dirs.bpffsDir)).toBe(false);
  });
});
