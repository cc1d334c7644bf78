// NkitCniHandler over a fake datapath and a real IPAM and pod lifecycle: conflicts, rollback, DEL scoping, STATUS.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type AttachmentStore, openAttachmentStore } from "../../src/cni/attachments.js";
import { CniCode, toCniError } from "../../src/cni/codes.js";
import { type EndpointDatapath, NkitCniHandler } from "../../src/cni/handler.js";
import { type CniRequest, parseRequest } from "../../src/cni/protocol.js";
import type { WiredEndpoint, WireRequest } from "../../src/datapath/endpoint-manager.js";
import { AlreadyExistsError, NetlinkError } from "../../src/errors.js";
import { Ipam } from "../../src/ipam/ipam.js";
import { PodLifecycle } from "../../src/pods/lifecycle.js";

class FakeDatapath implements EndpointDatapath {
  readonly mode = "veth" as const;
  readonly wired = new Map<string, WiredEndpoint>();
  failNext = false;
  async wire(r: WireRequest): Promise<WiredEndpoint> {
    if (this.failNext) {
      this.failNext = false;
      throw new NetlinkError("RTM_NEWLINK", 17, "EEXIST", "File exists");
    }
    const ep: WiredEndpoint = {
      id: r.id,
      epNum: this.wired.size + 1,
      mode: "veth",
      hostIfName: `nk${r.id.slice(0, 11)}`,
      hostIfindex: 100,
      podIfName: r.ifName ?? "eth0",
      netnsPath: r.netnsPath,
      addresses: { ...r.addresses },
      labels: { ...r.labels },
    };
    this.wired.set(r.id, ep);
    return ep;
  }
  async unwire(id: string): Promise<boolean> {
    return this.wired.delete(id);
  }
  get(id: string): WiredEndpoint | undefined {
    return this.wired.get(id);
  }
  async verify(id: string): Promise<string | undefined> {
    return this.wired.has(id) ? undefined : `endpoint ${id} is not wired`;
  }
  setLabels(id: string, labels: Record<string, string>): WiredEndpoint | undefined {
    const ep = this.wired.get(id);
    if (ep) ep.labels = { ...labels };
    return ep;
  }
}

let dir: string;
let dp: FakeDatapath;
let ipam: Ipam;
let store: AttachmentStore;
let handler: NkitCniHandler;
let notReady: string | undefined;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "nkit-cni-unit-"));
  dp = new FakeDatapath();
  ipam = Ipam.open({ podCIDRs: ["10.77.0.0/24", "fd77::/64"], stateDir: join(dir, "ipam") });
  store = openAttachmentStore(join(dir, "att.json"));
  notReady = undefined;
  handler = new NkitCniHandler({
    endpoints: dp,
    pods: new PodLifecycle(dp, ipam),
    attachments: store,
    notReady: () => notReady,
    probeLinks: async () => undefined,
  });
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const req = (o: Record<string, unknown> = {}, conf: Record<string, unknown> = {}): CniRequest =>
  parseRequest(
    JSON.stringify({
      v: 1,
      command: "ADD",
      containerId: "c1",
      netns: "/run/netns/p1",
      ifName: "eth0",
      args: "IgnoreUnknown=1;NOMAD_ALLOC_ID=a1",
      path: "",
      config: { cniVersion: "1.1.0", name: "nkit", mode: "wire", ...conf },
      ...o,
    }),
  );

async function codeOf(p: Promise<unknown>): Promise<number | undefined> {
  try {
    await p;
  } catch (e) {
    return toCniError(e).cniCode; // what the server answers
  }
  return undefined;
}

describe("NkitCniHandler", () => {
  it("wires with the reserved addresses and CNI_ARGS labels; a repeated ADD is idempotent", async () => {
    const r1 = await handler.add(req());
    const ep = dp.get("c1");
    expect(ep?.addresses).toEqual({ ipv4: ipam.get("c1")?.ipv4, ipv6: ipam.get("c1")?.ipv6 });
    expect(ep?.labels).toEqual({ NOMAD_ALLOC_ID: "a1" });
    expect(await handler.add(req())).toEqual(r1);
    expect(store.list()).toHaveLength(1);
  });

  it("refuses a second interface, network or netns for one container (105)", async () => {
    await handler.add(req());
    expect(await codeOf(handler.add(req({ ifName: "eth1" })))).toBe(CniCode.ATTACHMENT_CONFLICT);
    expect(await codeOf(handler.add(req({}, { name: "other" })))).toBe(CniCode.ATTACHMENT_CONFLICT);
    expect(await codeOf(handler.add(req({ netns: "/run/netns/elsewhere" })))).toBe(
      CniCode.ATTACHMENT_CONFLICT,
    );
  });

  it("rolls a failed first ADD back completely (103) and maps IPAM conflicts (102)", async () => {
    dp.failNext = true;
    expect(await codeOf(handler.add(req()))).toBe(CniCode.DATAPATH);
    expect(ipam.list()).toEqual([]);
    expect(store.list()).toEqual([]);
    await handler.add(req({}, { mode: "ipam", runtimeConfig: { ips: ["10.77.0.9"] } }));
    expect(
      await codeOf(
        handler.add(req({ containerId: "c2" }, { mode: "ipam", runtimeConfig: { ips: ["10.77.0.9"] } })),
      ),
    ).toBe(CniCode.IPAM_CONFLICT);
  });

  it("DEL ignores attachments it did not make and is idempotent", async () => {
    await handler.add(req());
    await handler.del(req({ command: "DEL", ifName: "eth1", netns: "" }));
    expect(dp.get("c1")).toBeDefined();
    await handler.del(req({ command: "DEL", netns: "" }));
    await handler.del(req({ command: "DEL", netns: "" }));
    expect(dp.get("c1")).toBeUndefined();
    expect(ipam.list()).toEqual([]);
    expect(store.list()).toEqual([]);
  });

  it("DEL in ipam mode also unwires the endpoint the NRI hook made", async () => {
    await handler.add(req({}, { mode: "ipam" }));
    await dp.wire({ id: "c1", netnsPath: "/run/netns/p1", addresses: { ipv4: ipam.get("c1")!.ipv4! } });
    await handler.del(req({ command: "DEL" }, { mode: "ipam" }));
    expect(dp.get("c1")).toBeUndefined();
    expect(ipam.get("c1")).toBeUndefined();
  });

  it("STATUS reports 50 while the datapath is not ready", async () => {
    await handler.status(req({ command: "STATUS" }));
    notReady = "restoring endpoints";
    expect(await codeOf(handler.status(req({ command: "STATUS" })))).toBe(CniCode.STATUS_UNAVAILABLE);
  });
});

describe("NkitCniHandler host ports", () => {
  class Claims {
    readonly held = new Map<string, string>(); // "port/proto" -> container
    claim(id: string, mappings: readonly { hostPort: number; protocol: string }[]): void {
      for (const m of mappings) {
        const owner = this.held.get(`${m.hostPort}/${m.protocol}`);
        if (owner !== undefined && owner !== id)
          throw new AlreadyExistsError(`host port ${m.hostPort} is mapped by ${owner}`);
      }
      for (const m of mappings) this.held.set(`${m.hostPort}/${m.protocol}`, id);
    }
    release(id: string): void {
      for (const [k, v] of this.held) if (v === id) this.held.delete(k);
    }
  }
  const mapping = { portMappings: [{ hostPort: 12000, containerPort: 80, protocol: "tcp" }] };
  const withPorts = (o: Record<string, unknown>) => req(o, { runtimeConfig: mapping });

  it("claims on the first ADD, refuses a taken port leaving nothing of the second container, releases on DEL", async () => {
    const claims = new Claims();
    const h = new NkitCniHandler({
      endpoints: dp,
      pods: new PodLifecycle(dp, ipam),
      attachments: store,
      hostPorts: claims,
    });
    await h.add(withPorts({}));
    expect([...claims.held]).toEqual([["12000/tcp", "c1"]]);
    expect(await codeOf(h.add(withPorts({ containerId: "c2", netns: "/run/netns/p2" })))).toBe(
      CniCode.ATTACHMENT_CONFLICT,
    );
    expect(ipam.get("c2")).toBeUndefined();
    expect(dp.get("c2")).toBeUndefined();
    expect(store.get("c2")).toBeUndefined();
    await h.del(withPorts({ command: "DEL" }));
    expect(claims.held.size).toBe(0);
    await h.add(withPorts({ containerId: "c2", netns: "/run/netns/p2" }));
    expect([...claims.held]).toEqual([["12000/tcp", "c2"]]);
  });
});
