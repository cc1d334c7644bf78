// nkit's packages (scripts/package.sh) in a fresh Debian 12 root with no compiler, no headers and no
// libbpf, used as a user would:
//  - the npm tarball, with the official Node 20 build and npm: `npm install -g --offline` (every
//    dependency is bundled), `nkit probe` (a clear verdict naming libelf1 while it is missing, then
//    the kernel's features), nkitd, and a wire-mode CNI ADD and DEL through the packaged nkit-cni;
//  - the Debian package: `apt-get install ./nkit_*.deb` (Debian's own nodejs, libelf1 and iproute2
//    come with it), the same probe and CNI ADD/DEL at the package's paths; a reinstall (upgrade) with
//    an nkitd restart keeps a wired pod forwarding; remove keeps the configuration; purge leaves no
//    file, pin or device behind.
// nkitd runs inside the root, in a network namespace of its own ("the node") with a veth as its uplink
// and a cgroup of the test's for its socket load-balancer.
import { randomInt } from "node:crypto";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createTestCgroup } from "../helpers/cgroup.js";
import { uniqueIfName } from "../helpers/names.js";
import { createNetns, type TestNetns, vethBetween } from "../helpers/netns.js";
import { type Proc, spawnProc, until } from "../helpers/nkitd.js";
import { waitFor } from "../helpers/process.js";
import { Scope } from "../helpers/scope.js";
import { run } from "../helpers/sys.js";
import { artifact, DebianRoot, debianDebs, nodeTarballs, packageLaneUnavailable } from "./env.js";

const skip = packageLaneUnavailable();
const scope = new Scope();
afterAll(() => scope.close(), 120_000);

interface Node {
  netns: TestNetns;
  uplink: string;
  cgroup: string;
  cidr4: string;
  cidr6: string;
}

/** "The node": a netns with a veth uplink (its far end in a netns of its own) and a test cgroup. */
async function node(label: string): Promise<Node> {
  const netns = await createNetns(scope, label);
  const far = await createNetns(scope, `${label}f`);
  const uplink = uniqueIfName("u");
  await vethBetween(uplink, netns.name, "far", far.name);
  const net = randomInt(100, 250);
  await run("ip", ["-n", netns.name, "addr", "add", `10.${net}.0.1/24`, "dev", uplink]);
  await run("ip", ["-n", netns.name, "link", "set", uplink, "up"]);
  await run("ip", ["-n", netns.name, "route", "add", "default", "via", `10.${net}.0.2`]);
  return {
    netns,
    uplink,
    cgroup: createTestCgroup(scope, label),
    cidr4: `10.${net}.${randomInt(1, 250)}.0/24`,
    cidr6: `fd${randomInt(16, 255).toString(16)}:${randomInt(1, 0xffff).toString(16)}::/64`,
  };
}

function nkitdConfig(n: Node): string {
  return [
    `podCIDRs: [${n.cidr4}, "${n.cidr6}"]`,
    `uplinks: [${n.uplink}]`,
    `paths: {cgroup: ${n.cgroup}}`,
    "nri: {enabled: false}",
  ].join("\n");
}

/** nkitd started the way the given argv says, inside the root and the node's netns; waits until it runs. */
async function startNkitd(root: DebianRoot, n: Node, argv: readonly string[]): Promise<Proc> {
  const env = ["PATH=/usr/local/bin:/usr/bin:/usr/sbin:/bin:/sbin", "NKIT_LOG_JSON=1"];
  const proc = spawnProc(
    "nsenter",
    [`--net=${n.netns.path}`, "--", "chroot", root.dir, "/usr/bin/env", "-i", ...env, ...argv],
    scope,
  );
  try {
    await until(
      () => proc.out().includes('"msg":"nkitd running"'),
      "nkitd in the root",
      60_000,
      proc.running,
    );
  } catch (e) {
    throw new Error(`${(e as Error).message}\n${proc.out()}\n${proc.err()}`);
  }
  return proc;
}

async function stopNkitd(proc: Proc): Promise<void> {
  if (proc.running()) proc.child.kill("SIGTERM");
  await proc.done;
}

interface CniResult {
  ips?: { address: string }[];
  code?: number;
  msg?: string;
}

/** One CNI call of the packaged nkit-cni (wire mode), as a runtime makes it from the node. */
async function cni(
  root: DebianRoot,
  n: Node,
  plugin: string,
  command: "ADD" | "DEL",
  id: string,
  pod: TestNetns,
): Promise<CniResult | undefined> {
  const conf = {
    cniVersion: "1.0.0",
    name: "nkit",
    type: "nkit-cni",
    mode: "wire",
    socket: "/run/nkit/cni.sock",
  };
  const r = await root.exec([plugin], {
    netns: n.netns.path,
    input: JSON.stringify(conf),
    env: {
      CNI_COMMAND: command,
      CNI_CONTAINERID: id,
      CNI_NETNS: pod.path,
      CNI_IFNAME: "eth0",
      CNI_PATH: "/opt/cni/bin",
    },
  });
  if (r.code !== 0) throw new Error(`nkit-cni ${command} exited ${r.code}: ${r.stdout} ${r.stderr}`);
  return r.stdout.trim() ? (JSON.parse(r.stdout) as CniResult) : undefined;
}

/** ADD wires the pod (its eth0 holds the result's addresses, the node reaches it); returns its IPv4. */
async function wirePod(
  root: DebianRoot,
  n: Node,
  plugin: string,
  id: string,
): Promise<{ pod: TestNetns; ipv4: string }> {
  const pod = await createNetns(scope, "pkgpod");
  const res = await cni(root, n, plugin, "ADD", id, pod);
  const ips = (res?.ips ?? []).map((i) => i.address.split("/")[0]!);
  expect(ips).toHaveLength(2);
  const addrs = (await run("ip", ["-n", pod.name, "-o", "addr", "show", "dev", "eth0"])).stdout;
  for (const ip of ips) expect(addrs).toContain(ip);
  const ipv4 = ips.find((i) => i.includes("."))!;
  await run("nsenter", [`--net=${n.netns.path}`, "--", "ping", "-c", "1", "-W", "2", ipv4]);
  return { pod, ipv4 };
}

/** The pod's host device (nk + 11 hex) in the node. */
async function podDevices(n: Node): Promise<string[]> {
  const out = (await run("ip", ["-n", n.netns.name, "-o", "link", "show"])).stdout;
  return [...out.matchAll(/^\d+: (nk[0-9a-f]{11})[@:]/gm)].map((m) => m[1]!);
}

describe.skipIf(skip !== undefined)(
  `nkit's packages in a fresh Debian 12 root${skip ? ` (skipped: ${skip})` : ""}`,
  () => {
    it("the npm tarball installs offline with Node 20 and wires a pod through its nkit-cni", async () => {
      const root = await DebianRoot.create(scope, "npm");
      expect((await root.exec(["sh", "-c", "command -v cc gcc clang || true"])).stdout.trim()).toBe("");
      // Node 20 and npm as a user unpacks them from nodejs.org into /usr/local.
      const { node: nodeTgz, npm: npmTgz } = await nodeTarballs();
      await run("tar", [
        "-xzf",
        nodeTgz,
        "-C",
        root.path("usr/local"),
        "--strip-components=1",
        "package/bin/node",
      ]);
      await run("mkdir", ["-p", root.path("usr/local/lib/node_modules/npm")]);
      await run("tar", [
        "-xzf",
        npmTgz,
        "-C",
        root.path("usr/local/lib/node_modules/npm"),
        "--strip-components=1",
      ]);
      await root.ok(["ln", "-s", "../lib/node_modules/npm/bin/npm-cli.js", "/usr/local/bin/npm"]);
      const tgz = artifact(".tgz");
      await run("cp", [tgz, root.path("tmp")]);
      await root.ok(
        ["npm", "install", "-g", "--offline", "--no-audit", "--no-fund", `/tmp/${basename(tgz)}`],
        {
          timeoutMs: 300_000,
        },
      );
      expect((await root.ok(["nkitd", "--version"])).trim()).toMatch(/^\d+\.\d+\.\d+/);
      // minbase has no libelf1: the verdict names the package; with it, the kernel's features.
      const missing = await root.exec(["nkit", "probe"]);
      expect(missing.code).not.toBe(0);
      expect(missing.stderr).toMatch(/needs libelf\.so\.1: install libelf1/);
      const debs = await debianDebs(["libelf1"]);
      for (const d of debs) await run("cp", [d, root.path("tmp")]);
      await root.ok(["dpkg", "-i", ...debs.map((d) => `/tmp/${basename(d)}`)]);
      const probe = await root.ok(["nkit", "probe"]);
      expect(probe).toMatch(/^pass +tcx$/m);
      expect(probe).toMatch(/^pass +redirect_peer$/m);

      const n = await node("pkgnpm");
      writeFileSync(root.path("etc/nkitd-test.yaml"), nkitdConfig(n));
      const nkitd = await startNkitd(root, n, ["nkitd", "--config", "/etc/nkitd-test.yaml"]);
      const plugin = "/usr/local/lib/node_modules/nkit/prebuilds/linux-x64/nkit-cni";
      const { pod } = await wirePod(root, n, plugin, "pkg-npm-1");
      expect(await podDevices(n)).toHaveLength(1);
      await cni(root, n, plugin, "DEL", "pkg-npm-1", pod);
      // The pair's deletion follows the DEL's answer.
      await waitFor(async () => (await podDevices(n)).length === 0, "the pod's devices to go", 5_000);
      expect((await run("ip", ["-n", pod.name, "-o", "link", "show"])).stdout).not.toContain("eth0");
      await stopNkitd(nkitd);
      // Taking the root apart leaves the host's netns alone (they are visible in the root's /run/netns).
      await root.close();
      for (const ns of [n.netns, pod]) expect(existsSync(ns.path)).toBe(true);
    });

    it("the Debian package installs with Debian's own packages, survives a reinstall with a pod wired, and purges clean", async () => {
      const root = await DebianRoot.create(scope, "deb");
      const deb = artifact(".deb");
      await run("cp", [deb, root.path("tmp")]);
      await root.ok(["apt-get", "update", "-q"], { timeoutMs: 300_000 });
      await root.ok(["apt-get", "install", "-y", "-q", "--no-install-recommends", `/tmp/${basename(deb)}`], {
        timeoutMs: 600_000,
        env: { DEBIAN_FRONTEND: "noninteractive" },
      });
      expect((await root.exec(["sh", "-c", "command -v cc gcc clang || true"])).stdout.trim()).toBe("");
      expect((await root.ok(["node", "--version"])).trim()).toMatch(/^v18\./);
      expect(await root.ok(["nkit", "probe"])).toMatch(/^pass +tcx$/m);
      for (const f of [
        "usr/bin/nkitd",
        "opt/cni/bin/nkit-cni",
        "lib/systemd/system/nkitd.service",
        "etc/nkit/nkitd.yaml",
      ]) {
        expect(existsSync(root.path(f))).toBe(true);
      }

      const n = await node("pkgdeb");
      // The package's config, with what this test's node needs appended.
      const conf = `${await root.ok(["cat", "/etc/nkit/nkitd.yaml"])}\n${nkitdConfig(n)}\n`;
      writeFileSync(root.path("etc/nkit/nkitd.yaml"), conf);
      const unit = await root.ok(["cat", "/lib/systemd/system/nkitd.service"]);
      const execStart = /^ExecStart=(.*)$/m.exec(unit)![1]!.split(" ");
      expect(execStart).toEqual(["/usr/bin/nkitd", "--config", "/etc/nkit/nkitd.yaml"]);
      let nkitd = await startNkitd(root, n, execStart);
      const { pod, ipv4 } = await wirePod(root, n, "/opt/cni/bin/nkit-cni", "pkg-deb-1");

      // Upgrade: the package again, nkitd restarted by hand (no systemd in a chroot): still forwarding.
      await root.ok(["dpkg", "-i", `/tmp/${basename(deb)}`]);
      await stopNkitd(nkitd);
      await run("nsenter", [`--net=${n.netns.path}`, "--", "ping", "-c", "1", "-W", "2", ipv4]);
      nkitd = await startNkitd(root, n, execStart);
      await run("nsenter", [`--net=${n.netns.path}`, "--", "ping", "-c", "1", "-W", "2", ipv4]);
      expect(await root.ok(["nkit", "endpoint", "list"])).toContain("pkg-deb-1");
      expect(await root.ok(["cat", "/etc/nkit/nkitd.yaml"])).toBe(conf);
      await stopNkitd(nkitd);

      // Remove keeps the configuration (and the datapath); purge takes everything, in the node's netns.
      await root.ok(["apt-get", "remove", "-y", "-q", "nkit"], { netns: n.netns.path, timeoutMs: 120_000 });
      expect(existsSync(root.path("etc/nkit/nkitd.yaml"))).toBe(true);
      expect(existsSync(root.path("usr/bin/nkitd"))).toBe(false);
      await root.ok(["apt-get", "purge", "-y", "-q", "nkit"], { netns: n.netns.path, timeoutMs: 120_000 });
      expect(existsSync(root.path("etc/nkit"))).toBe(false);
      expect(existsSync(root.path("var/lib/nkit"))).toBe(false);
      // Every bpffs instance holds the kernel's maps.debug and progs.debug; nothing of nkit's is left.
      expect(readdirSync(root.path("sys/fs/bpf")).filter((f) => !f.endsWith(".debug"))).toEqual([]);
      expect(await podDevices(n)).toEqual([]);
      expect(existsSync(join(root.dir, "opt/cni/bin/nkit-cni"))).toBe(false);
      void pod;
    });
  },
);
