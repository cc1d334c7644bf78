// Per-netns helpers that run on a helper thread inside the namespace: the JS thread never moves.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { NotFoundError } from "../../src/errors.js";
import {
  ifNameToIndex,
  netnsInode,
  Rtnl,
  sameNetns,
  sysctlRead,
  sysctlWrite,
} from "../../src/netlink/index.js";
import { createNetns, type TestNetns } from "../helpers/netns.js";
import { Scope } from "../helpers/scope.js";
import { inNetns } from "../helpers/sys.js";

let scope: Scope;
let ns: TestNetns;

beforeEach(async () => {
  scope = new Scope();
  ns = await createNetns(scope, "sys");
});

afterEach(async () => {
  await scope.close();
});

describe("netns identity and per-netns operations", () => {
  it("compares namespaces by inode", () => {
    expect(sameNetns(ns.path, ns.path)).toBe(true);
    expect(netnsInode(ns.path)).not.toBe(netnsInode("/proc/self/ns/net"));
  });

  it("writes sysctls inside the netns without touching the host", async () => {
    const hostForward = await sysctlRead("net.ipv4.ip_forward");
    const target = hostForward === "1" ? "0" : "1";
    await sysctlWrite("net.ipv4.ip_forward", target, ns.path);
    await sysctlWrite("net/ipv4/conf/all/rp_filter", 0, ns.path);
    expect(await sysctlRead("net.ipv4.ip_forward", ns.path)).toBe(target);
    expect((await inNetns(ns.path, "cat", ["/proc/sys/net/ipv4/ip_forward"])).stdout.trim()).toBe(target);
    expect((await inNetns(ns.path, "cat", ["/proc/sys/net/ipv4/conf/all/rp_filter"])).stdout.trim()).toBe(
      "0",
    );
    expect(await sysctlRead("net.ipv4.ip_forward")).toBe(hostForward);
    await expect(sysctlWrite("net.ipv4.no_such_key", 1, ns.path)).rejects.toThrow(NotFoundError);
    await expect(sysctlWrite("kernel.hostname", "x", ns.path)).rejects.toThrow(/only per-netns keys/);
  });

  it("resolves interface names inside the netns", async () => {
    expect(await ifNameToIndex("lo", ns.path)).toBe(1);
    await expect(ifNameToIndex("nope0", ns.path)).rejects.toThrow(NotFoundError);
  });

  it("keeps the JS thread in its own netns while many in-netns operations run concurrently", async () => {
    const before = netnsInode("/proc/thread-self/ns/net");
    const handles = await Promise.all(Array.from({ length: 8 }, () => Rtnl.inNetns(ns.path)));
    try {
      const results = await Promise.all(handles.flatMap((h) => [h.listLinks(), h.listLinks()]));
      for (const links of results) expect(links.map((l) => l.name)).toEqual(["lo"]);
      await Promise.all(Array.from({ length: 16 }, () => ifNameToIndex("lo", ns.path)));
    } finally {
      await Promise.all(handles.map((h) => h.close()));
    }
    expect(netnsInode("/proc/thread-self/ns/net")).toBe(before);
  });
});
