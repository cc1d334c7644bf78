// What a hostile pod or a local user can do to nkit, through a live nkitd:
//  - a pod with CAP_NET_RAW writing whole Ethernet frames (AF_PACKET, no help from its IP stack)
//    cannot get a packet with any source but its own addresses past its host device, over IPv4 or
//    IPv6: every forged frame is dropped and counted as DROP_SPOOFED_SOURCE, while the same frames
//    with its true source arrive (so the raw path itself works);
//  - a user other than root cannot reach nkitd's API or CNI socket (refused by the socket's mode
//    0600 before nkitd reads a byte) nor read its state dir (0700).
import { execFileSync } from "node:child_process";
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
  requireDist,
  spawnProc,
  until,
} from "../helpers/nkitd.js";
import { Scope } from "../helpers/scope.js";
import { run } from "../helpers/sys.js";

const scope = new Scope();
let setup: NkitdSetup;
let api: NkitClient;
const pods: { ns: TestNetns; ep: Endpoint }[] = [];
const PORT = 7090;
const NOBODY = ["--reuid=65534", "--regid=65534", "--clear-groups", "--"];

beforeAll(async () => {
  requireDist();
  setup = await nkitdSetup(scope, "sec");
  await Nkitd.start(scope, ["--config", setup.config]);
  api = new NkitClient(setup.socket);
  scope.defer(() => api.close());
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

async function spoofDrops(id: string): Promise<bigint> {
  const c = (await api.getEndpoint(id)).counters.find((x) => x.reason === "DROP_SPOOFED_SOURCE");
  return BigInt(c?.packets ?? 0);
}

describe("a hostile pod and a local user", () => {
  it("a pod writing raw frames gets only its own source addresses past its host device (v4 and v6)", async () => {
    const [a, b] = pods as [(typeof pods)[0], (typeof pods)[0]];
    // In pod b: a UDP receiver printing the payload of each datagram (which names its claimed source).
    const js = `const s = require("node:dgram").createSocket({ type: "udp6", ipv6Only: false });
s.on("message", (m) => process.stdout.write(m + "\\n")); s.bind(${PORT}, "::", () => process.stdout.write("ready\\n"));`;
    const rx = spawnProc("nsenter", [`--net=${b.ns.path}`, "--", process.execPath, "-e", js], scope);
    await until(() => rx.out().includes("ready"), "the receiver", 10_000, rx.running);
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
    const before = await spoofDrops(a.ep.id);
    for (const [src, dst] of forged) await send(src, dst);
    await send(own4, b.ep.addresses.ipv4);
    await send(own6, b.ep.addresses.ipv6);
    await until(
      () =>
        rx
          .out()
          .split("\n")
          .filter((l) => l.startsWith("from ")).length >= 6,
      "the true-source datagrams",
      10_000,
    );
    await new Promise((r) => setTimeout(r, 300));
    const got = rx
      .out()
      .split("\n")
      .filter((l) => l.startsWith("from "));
    expect(got.sort()).toEqual([...Array(3).fill(`from ${own4}`), ...Array(3).fill(`from ${own6}`)].sort());
    expect((await spoofDrops(a.ep.id)) - before).toBeGreaterThanOrEqual(BigInt(3 * forged.length));
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
