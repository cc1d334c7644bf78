// 10,000 services in the real load-balancer maps, and a random sample of 500 of them resolved by
// the kernel: a client in the test's cgroup connects to each sampled VIP and the listener tells
// which backend address it was reached on (every service has its own 127.1.x.y backend). Then the
// load-balancer is destroyed and nothing stays attached or pinned.
import { randomInt } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { queryCgroupAttached } from "../../src/bpf/link.js";
import { PinDir } from "../../src/bpf/pins.js";
import { ServiceManager } from "../../src/services/manager.js";
import { SocketLb } from "../../src/services/socket-lb.js";
import { DEFAULT_AFFINITY_TIMEOUT_SECONDS, type ServiceSpec } from "../../src/services/spec.js";
import { createTestCgroup, inCgroup } from "../helpers/cgroup.js";
import { uniqueBpffsDir } from "../helpers/names.js";
import { until } from "../helpers/nkitd.js";
import { Scope } from "../helpers/scope.js";

const CLIENT = join(import.meta.dirname, "..", "fixtures", "net", "lb-client.mjs");
const N = 10_000;
const SAMPLE = 500;
const PORT = randomInt(20000, 30000);

const vipOf = (i: number) => `10.98.${i >> 8}.${i & 255}`;
const backendOf = (i: number) => `127.1.${i >> 8}.${i & 255}`;

const scope = new Scope();
let cgroup: string;
let bpffs: string;
let lb: SocketLb;
let manager: ServiceManager;
let server: Server;

beforeAll(async () => {
  cgroup = createTestCgroup(scope, "scale");
  bpffs = uniqueBpffsDir("scale");
  scope.defer(() => rmSync(bpffs, { recursive: true, force: true }));
  const state = mkdtempSync(join(tmpdir(), "nkit-scale-"));
  scope.defer(() => rmSync(state, { recursive: true, force: true }));
  lb = SocketLb.open({ bpffsDir: bpffs, cgroup });
  scope.defer(() => lb.destroy());
  manager = new ServiceManager({ table: lb, storeDir: join(state, "services") });
  server = createServer((s) => s.end(s.localAddress ?? "")).listen(PORT, "0.0.0.0");
  await new Promise((r) => server.once("listening", r));
  scope.defer(() => new Promise((r) => server.close(r)));
}, 60_000);

afterAll(async () => {
  await scope.close();
});

describe("socket load-balancer at scale", () => {
  it("holds 10,000 services and resolves a sample of 500 to their own backends", async () => {
    const specs: ServiceSpec[] = Array.from({ length: N }, (_, i) => ({
      name: `svc-${i}`,
      vip: vipOf(i),
      family: 4,
      ports: [{ port: 80, protocol: "tcp", targetPort: PORT }],
      backends: [{ address: backendOf(i) }],
      affinity: "none",
      affinityTimeoutSeconds: DEFAULT_AFFINITY_TIMEOUT_SECONDS,
    }));
    expect(manager.replaceSource("config", specs)).toEqual([]);
    expect(lb.list()).toHaveLength(N);
    const sample = Array.from({ length: SAMPLE }, () => randomInt(0, N));
    const r = await inCgroup(
      cgroup,
      undefined,
      process.execPath,
      [CLIENT, "each", sample.map(vipOf).join(","), "80"],
      120_000,
    );
    const { answers } = JSON.parse(r.stdout.trim()) as { answers: string[] };
    expect(answers).toEqual(sample.map(backendOf));
  }, 180_000);

  it("leaves no attachment and no pin after destroy", async () => {
    lb.destroy();
    const hooks = ["connect4", "connect6", "sendmsg4", "sendmsg6", "recvmsg4", "recvmsg6"] as const;
    const attached = () => hooks.filter((h) => queryCgroupAttached(cgroup, h).programs.length > 0);
    // Unpinned links are released by a deferred kernel work item.
    await until(() => attached().length === 0, "the cgroup links to detach", 5_000).catch(() => undefined);
    expect(attached()).toEqual([]);
    expect(existsSync(new PinDir(bpffs).path("lb"))).toBe(false);
    expect(existsSync(join(bpffs, "nk_lb_services"))).toBe(false);
  });
});
