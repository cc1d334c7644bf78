// Failures surface as nkit errors with the kernel's own explanation, and leave nothing behind.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  AlreadyExistsError,
  InvalidArgumentError,
  isNativeErrnoError,
  NetlinkError,
  NetnsError,
  NotFoundError,
  NotSupportedError,
} from "../../src/errors.js";
import { netlinkAddon } from "../../src/native/netlink.js";
import { encodeMessage } from "../../src/netlink/codec.js";
import { Rtnl } from "../../src/netlink/index.js";
import { uniqueNetnsName } from "../helpers/names.js";
import { createNetns, hostRtnl, scopedIfName } from "../helpers/netns.js";
import { Scope } from "../helpers/scope.js";
import { ipJson } from "../helpers/sys.js";

let scope: Scope;
let host: Rtnl;

beforeEach(async () => {
  scope = new Scope();
  host = await hostRtnl(scope);
});

afterEach(async () => {
  await scope.close();
});

function names(...suffixes: string[]): string[] {
  return suffixes.map((s) => scopedIfName(scope, s));
}

async function hostLinkNames(): Promise<string[]> {
  return (await host.listLinks()).map((l) => l.name);
}

describe("netns paths", () => {
  const missing = `/run/netns/${uniqueNetnsName("missing")}`;

  it("rejects a missing netns path clearly and creates nothing", async () => {
    await expect(Rtnl.inNetns(missing)).rejects.toThrow(NetnsError);
    await expect(Rtnl.inNetns(missing)).rejects.toThrow(/does not exist/);
    const [a] = names("a");
    const err = await host
      .createVeth({ name: a!, peerName: "eth0", peerNetnsPath: missing })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NetnsError);
    expect((err as NetnsError).path).toBe(missing);
    expect(await hostLinkNames()).not.toContain(a);
  });

  it("rejects paths that are not network namespaces", async () => {
    await expect(Rtnl.inNetns("/etc/hostname")).rejects.toThrow(/not a network namespace/);
    await expect(Rtnl.inNetns("/proc/self/ns/mnt")).rejects.toThrow(/not a network namespace/);
  });
});

describe("kernel errors", () => {
  it("reports a taken interface name as EEXIST and leaves nothing", async () => {
    const [a, b, c] = names("a", "b", "c");
    await host.createVeth({ name: a!, peerName: b! });
    const err = await host.createVeth({ name: a!, peerName: c! }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AlreadyExistsError);
    expect(String(err)).toMatch(new RegExp(`create veth ${a} \\(peer ${c}\\): EEXIST`));
    expect((err as AlreadyExistsError).cause).toBeInstanceOf(NetlinkError);
    // The peer name taken: the kernel rolls the whole pair back.
    const [d] = names("d");
    await expect(host.createVeth({ name: d!, peerName: b! })).rejects.toThrow(AlreadyExistsError);
    const left = await hostLinkNames();
    expect(left).not.toContain(c);
    expect(left).not.toContain(d);
  });

  it("reports netkit as not supported on this kernel and leaves no device behind", async () => {
    const ns = await createNetns(scope, "nk");
    const [a] = names("nk");
    try {
      const link = await host.createNetkit({
        name: a!,
        peerName: "eth0",
        peerNetnsPath: ns.path,
        policy: "forward",
        peerPolicy: "blackhole",
      });
      // A netkit kernel (VM lane): the pair must carry what we asked for.
      expect(link.netkit).toMatchObject({ primary: true, mode: "l3", policy: "pass", peerPolicy: "drop" });
    } catch (e) {
      expect(e).toBeInstanceOf(NotSupportedError);
      expect(String(e)).toMatch(/netkit devices is not supported on this host: needs Linux >= 6\.7/);
      const cause = (e as NotSupportedError).cause;
      expect(cause).toBeInstanceOf(NetlinkError);
      expect((cause as NetlinkError).errnoCode).toBe("EOPNOTSUPP");
      expect((cause as NetlinkError).extack).toMatch(/Unknown device type/);
      expect(await hostLinkNames()).not.toContain(a);
      expect((await ipJson<{ ifname: string }[]>(["link", "show"], ns.name)).map((l) => l.ifname)).toEqual([
        "lo",
      ]);
    }
  });

  it("surfaces the kernel's extack text for an invalid MTU", async () => {
    const [a, b] = names("a", "b");
    await host.createVeth({ name: a!, peerName: b! });
    const err = await host.setMtu(a!, 1_000_000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NetlinkError);
    expect(err).toMatchObject({
      errnoCode: "EINVAL",
      extack: expect.stringMatching(/mtu greater than device maximum/),
    });
    expect(String(err)).toMatch(
      new RegExp(`set link ${a}: mtu 1000000: EINVAL: mtu greater than device maximum`),
    );
    await expect(host.setMtu(a!, 10)).rejects.toThrow(/mtu less than device minimum/);
    expect((await host.requireLink(a!)).mtu).toBe(1500);
  });

  it("maps missing objects and bad arguments", async () => {
    const [a] = names("zz");
    await expect(host.setMtu(a!, 1400)).rejects.toThrow(NotFoundError);
    await expect(host.requireLink(a!)).rejects.toThrow(NotFoundError);
    expect(await host.getLink(a!)).toBeUndefined();
    expect(await host.deleteLink(a!)).toBe(false);
    await expect(host.addAddress({ link: "lo", address: "10.0.0.300/32" })).rejects.toThrow(
      InvalidArgumentError,
    );
    await expect(host.addRoute({ dst: "default", gateway: "10.0.0.1" })).rejects.toThrow(/needs family/);
    await expect(
      host.createNetkit({ name: a!, peerName: "eth0", mode: "l3", peerMac: "02:00:00:00:00:01" }),
    ).rejects.toThrow(InvalidArgumentError);
  });

  it("refuses work after close", async () => {
    const h = await Rtnl.host();
    await h.close();
    await expect(h.listLinks()).rejects.toThrow(/closed/);
    await h.close();
  });

  it("times out with ETIMEDOUT when the kernel never answers", async () => {
    const nl = netlinkAddon();
    const fd = await nl.nlOpen(null, 0);
    try {
      // Without NLM_F_REQUEST the kernel ignores the message, so no answer ever comes.
      const silent = encodeMessage(18, 0, 1, [Buffer.alloc(16)]);
      const t0 = Date.now();
      const err = await nl.nlTransact(fd, silent, 150).catch((e: unknown) => e);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
      expect(isNativeErrnoError(err) && err.code).toBe("ETIMEDOUT");
      // The socket stays usable afterwards.
      const ok = encodeMessage(18, 0x1 | 0x4, 2, [
        Buffer.alloc(16),
        Buffer.from([8, 0, 3, 0, 0x6c, 0x6f, 0, 0]),
      ]);
      const replies = await nl.nlTransact(fd, ok, 1000);
      expect(replies.length).toBeGreaterThan(0);
    } finally {
      nl.nlClose(fd);
    }
  });
});
