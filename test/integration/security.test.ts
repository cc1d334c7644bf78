// What a hostile pod or a local user can do to nkit, through a live nkitd:
//  - a pod with CAP_NET_RAW writing whole Ethernet frames (AF_PACKET, no help from its IP stack)
//    cannot get a packet with any source but its own addresses past its host device, over IPv4 or
//    IPv6: every forged frame is dropped and counted as DROP_SPOOFED_SOURCE, while the same frames
//    with its true source arrive (so the raw path itself works);
//  - ARP and NDP claims a pod writes (of its gateway's address, of another pod's, a router
//    advertisement) reach only the host stack behind its own host device: no other pod sees them
//    (there is no shared L2 segment), no other pod's or the host's neighbour entries change, the
//    host takes no route or address from them;
//  - a pod is blackholed until it is admitted: a pod that raises its interface itself and writes
//    frames from the moment it appears gets nothing past its host device before nkitd attached the
//    programs and entered its addresses (forged sources never, its own only after that);
//  - what a pod reaches on the host: the host's addresses like any other destination (services
//    bound there answer), never the host's loopback (127.0.0.0/8, ::1: the kernel drops such
//    destinations arriving on a device), and no socket of nkitd's (unix sockets, metrics off by
//    default) — docs/security.md;
//  - a user other than root cannot reach nkitd's API or CNI socket (refused by the socket's mode
//    0600 before nkitd reads a byte) nor read its state dir (0700).
import { execFileSync } from "node:child_process";
import { randomInt } from "node:crypto";
import { statSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NkitClient } from "../../src/api/client.js";
import type { Endpoint } from "../../src/api/types.js";
import { createNetns, type TestNetns } from "../helpers/netns.js";
import {
  NET_FIXTURES,
  NKIT,
  Nkitd,
  type NkitdSetup,
  nkitdSetup,
  type OutsideNetns,
  outsideBehindUplink,
  type Proc,
  requireDist,
  spawnProc,
  until,
} from "../helpers/nkitd.js";
import { Scope } from "../helpers/scope.js";
import { run } from "../helpers/sys.js";

const scope = new Scope();
let setup: NkitdSetup;
let api: NkitClient;
let outside: OutsideNetns;
const pods: { ns: TestNetns; ep: Endpoint }[] = [];
const PORT = 7090;
const NOBODY = ["--reuid=65534", "--regid=65534", "--clear-groups", "--"];

beforeAll(async () => {
  requireDist();
  setup = await nkitdSetup(scope, "sec");
  await Nkitd.start(scope, ["--config", setup.config]);
  api = new NkitClient(setup.socket);
  scope.defer(() => api.close());
  outside = await outsideBehindUplink(scope, setup, "so");
  for (const name of ["sa", "sb"]) {
    const ns = await createNetns(scope, name);
    const ep = await api.wireEndpoint({ id: `sec-${name}-${process.pid}`, netnsPath: ns.path });
    scope.defer(() => api.unwireEndpoint(ep.id).catch(() => undefined));
    pods.push({ ns, ep });
  }
}, 60_000);

afterAll(() => scope.close(), 60_000);

const mac = async (netns: string | undefined, dev: string): Promise<string> => {
  const args = [...(netns ? ["-n", netns] : []), "-j", "link", "show", "dev", dev];
  return (JSON.parse((await run("ip", args)).stdout) as { address: string }[])[0]!.address;
};

/** A UDP receiver (in netns, or on the host) printing the payload of each datagram, which names
 * its claimed source, and the address it arrived at; one socket per bind address. */
async function udpReceiver(netns: string | undefined, binds: string[], port: number): Promise<Proc> {
  const js = `const dgram = require("node:dgram"); let n = 0;
for (const a of process.argv.slice(1)) {
  const s = dgram.createSocket({ type: a.includes(":") ? "udp6" : "udp4", ipv6Only: false });
  s.on("message", (m) => process.stdout.write(m + " @" + a + "\\n"));
  s.bind(${port}, a, () => { if (++n === process.argv.length - 1) process.stdout.write("ready\\n"); });
}`;
  const cmd = [process.execPath, "-e", js, ...binds];
  const rx = netns
    ? spawnProc("nsenter", [`--net=${netns}`, "--", ...cmd], scope)
    : spawnProc(cmd[0]!, cmd.slice(1), scope);
  await until(() => rx.out().includes("ready"), "the receiver", 10_000, rx.running);
  return rx;
}

/** "from SOURCE" per datagram, with " @BIND" when at is set. */
const received = (rx: Proc, at = false): string[] =>
  rx
    .out()
    .split("\n")
    .filter((l) => l.startsWith("from "))
    .map((l) => (at ? l : l.replace(/ @.*$/, "")));

const python = (netns: string, fixture: string, args: string[]) =>
  run("nsenter", [`--net=${netns}`, "--", "/usr/bin/python3", join(NET_FIXTURES, fixture), ...args]);

const json = async <T>(args: string[]): Promise<T> =>
  JSON.parse((await run("ip", ["-j", ...args])).stdout) as T;

interface Neigh {
  dst: string;
  dev?: string;
  lladdr?: string;
  state?: string[];
}

const counter = async (id: string, reason: string): Promise<bigint> =>
  BigInt((await api.getEndpoint(id)).counters.find((x) => x.reason === reason)?.packets ?? 0);

describe("a hostile pod and a local user", () => {
  it("a pod writing raw frames gets only its own source addresses past its host device (v4 and v6)", async () => {
    const [a, b] = pods as [(typeof pods)[0], (typeof pods)[0]];
    // In pod b: a UDP receiver printing the payload of each datagram (which names its claimed source).
    const rx = await udpReceiver(b.ns.path, ["::"], PORT);
    const srcMac = await mac(a.ns.name, "eth0");
    const gwMac = await mac(undefined, a.ep.hostIfName);
    const send = (src: string, dst: string) =>
      run("nsenter", [
        `--net=${a.ns.path}`,
        "--",
        "/usr/bin/python3",
        join(NET_FIXTURES, "raw-frame.py"),
        "eth0",
        srcMac,
        gwMac,
        src,
        dst,
        String(PORT),
        "3",
      ]);
    const own4 = a.ep.addresses.ipv4;
    const own6 = a.ep.addresses.ipv6;
    const forged = [
      [own4.replace(/\.\d+$/, ".250"), b.ep.addresses.ipv4], // another address of the pod CIDR
      [b.ep.addresses.ipv4, b.ep.addresses.ipv4], // the destination's own
      ["192.0.2.77", b.ep.addresses.ipv4], // an address from outside
      [own6.replace(/:[0-9a-f]+$/, ":fa"), b.ep.addresses.ipv6],
      ["2001:db8::77", b.ep.addresses.ipv6],
    ] as const;
    const before = await counter(a.ep.id, "DROP_SPOOFED_SOURCE");
    for (const [src, dst] of forged) await send(src, dst);
    await send(own4, b.ep.addresses.ipv4);
    await send(own6, b.ep.addresses.ipv6);
    await until(() => received(rx).length >= 6, "the true-source datagrams", 10_000);
    await new Promise((r) => setTimeout(r, 300));
    expect(received(rx).sort()).toEqual(
      [...Array(3).fill(`from ${own4}`), ...Array(3).fill(`from ${own6}`)].sort(),
    );
    expect((await counter(a.ep.id, "DROP_SPOOFED_SOURCE")) - before).toBeGreaterThanOrEqual(
      BigInt(3 * forged.length),
    );
    rx.child.kill();
  });

  it("ARP and NDP claims reach only the claimer's own host device; a router advertisement changes nothing", async () => {
    const [a, b] = pods as [(typeof pods)[0], (typeof pods)[0]];
    const aMac = await mac(a.ns.name, "eth0");
    const bMac = await mac(b.ns.name, "eth0");
    const gwMac = await mac(undefined, b.ep.hostIfName);
    const prefix = `fd${randomInt(16, 255).toString(16)}:${randomInt(1, 0xffff).toString(16)}:bad::/64`;
    const hostNeigh = () => json<Neigh[]>(["neigh", "show"]);
    const bNeigh = () => json<Neigh[]>(["-n", b.ns.name, "neigh", "show"]);
    // The main tables (the local table gains the host devices' own link-local addresses meanwhile).
    const routes = async () =>
      JSON.stringify([await json(["-4", "route", "show"]), await json(["-6", "route", "show"])]);
    const beforeRoutes = await routes();
    const beforeB = await bNeigh();
    // Everything pod b's interface receives from a's MAC, ARP and IPv6 alike.
    const sniff = spawnProc(
      "nsenter",
      [
        `--net=${b.ns.path}`,
        "--",
        "/usr/bin/python3",
        "-c",
        `import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)); s.bind(("eth0", 0)); s.settimeout(0.2)
src = bytes.fromhex(sys.argv[1].replace(":", "")); n = 0; print("ready", flush=True); end = time.time() + 4
while time.time() < end:
    try: f = s.recv(2048)
    except socket.timeout: continue
    n += f[6:12] == src
print("seen", n, flush=True)`,
        aMac,
      ],
      scope,
    );
    await until(() => sniff.out().includes("ready"), "the sniffer", 10_000, sniff.running);
    const nonIp = await counter(a.ep.id, "NON_IP");
    const claims: [string, string][] = [
      ["arp", "169.254.1.1"],
      ["arp", b.ep.addresses.ipv4],
      ["na", "fe80::1"],
      ["na", b.ep.addresses.ipv6],
      ["ra", prefix],
    ];
    for (const [kind, what] of claims) await python(a.ns.path, "raw-claim.py", ["eth0", aMac, kind, what]);
    const exit = await sniff.done;
    expect(exit.stdout).toContain("seen 0");
    // Handed to the host stack of a's own device, and counted there: 2 ARP + 1 NA/RA per round, 3 rounds.
    expect((await counter(a.ep.id, "NON_IP")) - nonIp).toBeGreaterThanOrEqual(BigInt(3 * 7));
    // b still resolves its gateway to its host device, and the host b's addresses to b.
    const gw = (await bNeigh()).filter((n) => n.dst === "169.254.1.1" || n.dst === "fe80::1");
    expect(gw.map((n) => [n.dst, n.lladdr, n.state]).sort()).toEqual(
      [
        ["169.254.1.1", gwMac, ["PERMANENT"]],
        ["fe80::1", gwMac, ["PERMANENT"]],
      ].sort(),
    );
    expect((await bNeigh()).filter((n) => n.lladdr === aMac)).toEqual([]);
    expect(beforeB.length).toBeGreaterThan(0);
    const host = await hostNeigh();
    for (const addr of [b.ep.addresses.ipv4, b.ep.addresses.ipv6]) {
      expect(host.filter((n) => n.dst === addr).map((n) => [n.dev, n.lladdr])).toEqual([
        [b.ep.hostIfName, bMac],
      ]);
    }
    // Whatever the host learnt from a's claims, it keeps on a's device, where only a's traffic goes.
    for (const n of host.filter((x) => x.lladdr === aMac)) expect(n.dev).toBe(a.ep.hostIfName);
    // No default route, prefix route or address from the advertisement (forwarding on the host device).
    expect(await routes()).toBe(beforeRoutes);
    expect((await run("ip", ["-6", "route", "show", "table", "all", "proto", "ra"])).stdout).toBe("");
    expect((await run("ip", ["-6", "addr", "show"])).stdout).not.toContain(prefix.replace("::/64", ":"));
    // And traffic still goes where it belongs.
    await run("ping", ["-c", "1", "-W", "2", b.ep.addresses.ipv4]);
    await run("ping", ["-6", "-c", "1", "-W", "2", b.ep.addresses.ipv6]);
    await run("nsenter", [`--net=${b.ns.path}`, "--", "ping", "-c", "1", "-W", "2", outside.host4]);
  });

  it("blackholes a pod until it is admitted, even one that raises its interface itself", async () => {
    const port = randomInt(20_000, 60_000);
    const rx = await udpReceiver(undefined, [outside.host4, outside.host6], port);
    const base4 = setup.cidr4.replace(/\.0\/24$/, "");
    const base6 = setup.cidr6.replace(/::\/64$/, "");
    const forged = ["192.0.2.88", "2001:db8::88"];
    const own: string[] = [];
    for (const n of [231, 232, 233]) {
      const ns = await createNetns(scope, `sq${n}`);
      const addresses = { ipv4: `${base4}.${n}`, ipv6: `${base6}::${n.toString(16)}` };
      own.push(addresses.ipv4, addresses.ipv6);
      const sender = spawnProc(
        "nsenter",
        [
          `--net=${ns.path}`,
          "--",
          "/usr/bin/python3",
          join(NET_FIXTURES, "raw-frame.py"),
          "--from-birth",
          "eth0",
          `${outside.host4},${outside.host6}`,
          String(port),
          "3",
          ...forged,
          addresses.ipv4,
          addresses.ipv6,
        ],
        scope,
      );
      await until(() => sender.out().includes("waiting"), "the sender", 10_000, sender.running);
      const ep = await api.wireEndpoint({ id: `sec-q${n}-${process.pid}`, netnsPath: ns.path, addresses });
      scope.defer(() => api.unwireEndpoint(ep.id).catch(() => undefined));
      const exit = await sender.done;
      expect(exit.stdout, exit.stderr).toMatch(/sent [1-9]/);
      await until(
        () =>
          received(rx).includes(`from ${addresses.ipv4}`) && received(rx).includes(`from ${addresses.ipv6}`),
        "the admitted pod's own datagrams",
        10_000,
      );
      await api.unwireEndpoint(ep.id);
    }
    const got = new Set(received(rx));
    expect([...got].sort()).toEqual(own.map((a) => `from ${a}`).sort());
    rx.child.kill();
  });

  it("lets a pod reach the host's addresses but never its loopback", async () => {
    const [a] = pods as [(typeof pods)[0]];
    const port = randomInt(20_000, 60_000);
    const rx = await udpReceiver(undefined, ["127.0.0.1", "::1", outside.host4, outside.host6], port);
    const srcMac = await mac(a.ns.name, "eth0");
    const gwMac = await mac(undefined, a.ep.hostIfName);
    const send = (src: string, dst: string) =>
      python(a.ns.path, "raw-frame.py", ["eth0", srcMac, gwMac, src, dst, String(port), "3"]);
    const v4 = a.ep.addresses.ipv4;
    const v6 = a.ep.addresses.ipv6;
    // Frames written straight at the host's loopback addresses (a pod's own stack would keep them).
    await send(v4, "127.0.0.1");
    await send(v6, "::1");
    await send(v4, outside.host4);
    await send(v6, outside.host6);
    await until(() => received(rx).length >= 6, "the datagrams to the host's addresses", 10_000);
    await new Promise((r) => setTimeout(r, 300));
    expect(received(rx, true).sort()).toEqual(
      [
        ...Array(3).fill(`from ${v4} @${outside.host4}`),
        ...Array(3).fill(`from ${v6} @${outside.host6}`),
      ].sort(),
    );
    rx.child.kill();
  });

  it("refuses a user other than root on the API and CNI sockets, and hides the state dir", async () => {
    let status: { code: number; stderr: string };
    try {
      execFileSync("setpriv", [...NOBODY, process.execPath, NKIT, "--socket", setup.socket, "status"], {
        stdio: ["ignore", "pipe", "pipe"],
      });
      status = { code: 0, stderr: "" };
    } catch (e) {
      const err = e as { status: number; stderr: Buffer };
      status = { code: err.status, stderr: String(err.stderr) };
    }
    expect(status.code).not.toBe(0);
    expect(status.stderr).toMatch(/EACCES|permission denied/i);
    const cni = join(setup.runDir, "cni.sock");
    const probe = `require("node:net").connect(process.argv[1]).on("connect", () => { console.log("connected"); process.exit(0); }).on("error", (e) => { console.log(e.code); process.exit(0); });`;
    const out = execFileSync("setpriv", [...NOBODY, process.execPath, "-e", probe, cni], {
      encoding: "utf8",
    });
    expect(out.trim()).toBe("EACCES");
    expect(statSync(setup.stateDir).mode & 0o777).toBe(0o700);
    for (const sock of [setup.socket, cni]) expect(statSync(sock).mode & 0o777).toBe(0o600);
    // Root is let in, so the refusal above is the socket's mode and not a dead nkitd.
    expect((await api.status()).endpointCount).toBeGreaterThanOrEqual(2);
  });
});
