// Several rtnetlink changes in one transaction (src/netlink/batch.ts), and a pair made into another
// netns whose creation answers with the link itself (its peer's index and our MACs).
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AlreadyExistsError } from "../../src/errors.js";
import { Rtnl } from "../../src/netlink/index.js";
import { uniqueIfName } from "../helpers/names.js";
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

async function podPair() {
  const ns = await createNetns(scope, "batch");
  const name = scopedIfName(scope, "bt");
  const peer = uniqueIfName("bp");
  const created = await host.createVeth({
    name,
    peerName: peer,
    peerNetnsPath: ns.path,
    mac: "02:00:00:00:aa:01",
    peerMac: "02:00:00:00:aa:02",
  });
  const pod = await Rtnl.inNetns(ns.path);
  scope.defer(() => pod.close());
  return { ns, name, peer, created, pod };
}

describe("a pair made into another netns", () => {
  it("names the pod end's index and carries the MACs asked for", async () => {
    const { peer, created, pod } = await podPair();
    const podEnd = await pod.requireLink(peer);
    expect(created.peerIndex).toBe(podEnd.index);
    expect(created.mac).toBe("02:00:00:00:aa:01");
    expect(podEnd.mac).toBe("02:00:00:00:aa:02");
  });
});

describe("RtnlBatch", () => {
  it("makes every change of a batch in order, in one transaction", async () => {
    const { ns, peer, created, pod } = await podPair();
    const dev = created.peerIndex ?? 0;
    const skipped = await pod
      .batch()
      .updateLink("lo", { up: true })
      .addAddress({ link: dev, address: "10.213.0.2/32" })
      .addAddress({ link: dev, address: "fd00:213::2/128" })
      .updateLink(dev, { up: true })
      .addRoute({ dst: "169.254.1.1", dev, scope: "link" })
      .addRoute({ dst: "default", family: 4, gateway: "169.254.1.1", dev })
      .replaceNeighbour({ link: dev, address: "169.254.1.1", lladdr: "02:00:00:00:aa:01" })
      .commit();
    expect(skipped).toEqual([]);
    const addrs = await ipJson<{ ifname: string; addr_info: { local: string }[] }[]>(
      ["addr", "show", peer],
      ns.name,
    );
    expect(addrs[0]?.addr_info.map((a) => a.local).sort()).toEqual(["10.213.0.2", "fd00:213::2"]);
    const routes = await ipJson<{ dst: string; gateway?: string }[]>(["route", "show"], ns.name);
    expect(routes).toContainEqual(expect.objectContaining({ dst: "default", gateway: "169.254.1.1" }));
    const neigh = await ipJson<{ dst: string; lladdr: string; state: string[] }[]>(
      ["neigh", "show"],
      ns.name,
    );
    expect(neigh).toContainEqual(
      expect.objectContaining({ dst: "169.254.1.1", lladdr: "02:00:00:00:aa:01" }),
    );
  });

  it("throws the first refused change that is not optional, reports optional ones, and the kernel still runs the rest", async () => {
    const { created, pod } = await podPair();
    const dev = created.peerIndex ?? 0;
    await pod.addAddress({ link: dev, address: "10.213.0.3/32" });
    const failed = pod
      .batch()
      // An MTU far beyond what a veth takes: refused, but optional.
      .updateLink(dev, { mtu: 0x7fff_ffff }, { optional: true })
      .addAddress({ link: dev, address: "10.213.0.3/32" }) // there already
      .addAddress({ link: dev, address: "10.213.0.4/32" })
      .commit();
    await expect(failed).rejects.toBeInstanceOf(AlreadyExistsError);
    await expect(failed).rejects.toThrow(/10\.213\.0\.3\/32.*already configured/);
    const all = (await pod.listAddresses({ link: dev })).map((a) => a.address);
    expect(all).toContain("10.213.0.4"); // processed after the refusal

    const skipped = await pod
      .batch()
      .updateLink(dev, { mtu: 0x7fff_ffff }, { optional: true })
      .updateLink(dev, { mtu: 1400 })
      .commit();
    expect(skipped).toHaveLength(1);
    expect(skipped[0]?.operation).toContain("mtu 2147483647");
    expect((await pod.requireLink(dev)).mtu).toBe(1400);
  });

  it("adds clsact once (an existing one is fine) and refuses a batched rename of a link named by name", async () => {
    const { created } = await podPair();
    await host.batch().ensureClsact(created.index).ensureClsact(created.index).commit();
    expect(() => host.batch().updateLink("lo", { name: "lo2" })).toThrow(/rename/);
    expect(await host.batch().commit()).toEqual([]);
  });
});
