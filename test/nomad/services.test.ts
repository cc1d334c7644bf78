// Nomad's native services synced into nkit VIPs, against a real Nomad v1.6.5 agent: a job's service
// gets a stable VIP reachable from the host and from an allocation; scaling adds backends; a failing
// check takes one out and a passing one puts it back; a stopped job's service goes; while Nomad is
// down (and across an nkitd restart then) the last known services keep answering, `nkit status` says
// Nomad is unreachable, and once Nomad is back the sync converges without duplicates or losses.
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NkitClient } from "../../src/api/client.js";
import type { Service, StatusResponse } from "../../src/api/types.js";
import { RUN_ID } from "../helpers/names.js";
import { doctorCheck, Nkitd, type NkitdSetup, nkit, nkitJson } from "../helpers/nkitd.js";
import { Scope } from "../helpers/scope.js";
import { httpdGroup, type NomadAgent, nomadUnavailable, startNomadLane } from "./env.js";
import { getFrom, until } from "./http.js";

const skip = nomadUnavailable();
const scope = new Scope();
let nomad: NomadAgent;
let api: NkitClient;
let setup: NkitdSetup;
let nkitd: Nkitd;

const suffix = `${RUN_ID}-${process.pid}`.toLowerCase();

/** A job whose allocations register service `svc` (Nomad provider) with an HTTP check on /health. */
const job = (id: string, svc: string, count: number) => `
job "${id}" {
  datacenters = ["dc1"]
  type = "service"
${httpdGroup({ name: "web", count, service: svc, check: true })}
}
`;

async function nomadServices(): Promise<Service[]> {
  return (await api.listServices()).services.filter((s) => s.source === "nomad");
}

/** Waits until nkit's service for Nomad service `svc` has exactly `n` backends. */
async function backendsOf(svc: string, n: number, timeoutMs = 60_000): Promise<Service> {
  return until(
    nomad,
    `service ${svc} with ${n} backends`,
    async () => {
      const s = (await nomadServices()).find((x) => x.name === `nomad.default.${svc}`);
      return s && s.backends.length === n ? s : undefined;
    },
    timeoutMs,
  );
}

/** Which allocations answer on the VIP: `tries` fresh connections from a host process. */
async function answersOf(vip: string, port: number, tries: number, netns?: string): Promise<Set<string>> {
  const seen = new Set<string>();
  for (let i = 0; i < tries; i++) {
    const body = (await getFrom({ cgroup: setup.cgroup, ...(netns ? { netns } : {}) }, vip, port)).trim();
    seen.add(body);
  }
  return seen;
}

/** The exec driver's /tmp of an allocation's task, on the host. */
function taskTmp(allocId: string): string {
  const dir = join(nomad.dataDir, "data", "alloc", allocId, "httpd", "tmp");
  if (!existsSync(dir)) throw new Error(`no task dir ${dir}`);
  return dir;
}

beforeAll(async () => {
  if (skip) return;
  ({ setup, nkitd, api, nomad } = await startNomadLane(scope, "nomadsvc"));
}, 180_000);

afterAll(() => scope.close(), 180_000);

describe.skipIf(skip !== undefined)(`Nomad services as nkit VIPs${skip ? ` (skipped: ${skip})` : ""}`, () => {
  const svc = `nkweb-${suffix}`;
  const id = `nksvc-${suffix}`;

  it("syncs a job's service into a VIP reachable from the host and from an allocation; scaling adds backends", async () => {
    await nomad.runJob(job(id, svc, 2));
    const allocs = await nomad.running(id, 2);
    const s = await backendsOf(svc, 2);
    expect(s.source).toBe("nomad");
    expect(s.vip).toMatch(/^10\.96\./);
    const port = s.ports[0]!.port;
    expect(port).toBe(8080);
    const ids = new Set(allocs.map((a) => a.ID));
    expect(await answersOf(s.vip, port, 16)).toEqual(ids);
    // From inside an allocation (a process of the host's cgroup in its netns).
    const fromAlloc = await answersOf(s.vip, port, 4, `/var/run/netns/${allocs[0]!.ID}`);
    for (const a of fromAlloc) expect(ids).toContain(a);
    const status = await nkitJson<StatusResponse>(setup.socket, "status");
    expect(status.nomad).toMatchObject({ connected: true, lastError: "" });
    const text = (await nkit(setup.socket, "status")).stdout;
    expect(text).toMatch(/^nomad: +http:\/\/127\.0\.0\.1:\d+: in sync, 1 services$/m);

    await nomad.runJob(job(id, svc, 3));
    const three = await backendsOf(svc, 3);
    expect(three.vip).toBe(s.vip);
    const all = new Set((await nomad.running(id, 3)).map((a) => a.ID));
    expect(await answersOf(s.vip, port, 24)).toEqual(all);
  });

  it("takes a backend out while its check fails and puts it back when it passes", async () => {
    const s = await backendsOf(svc, 3);
    const [victim] = await nomad.running(id, 3);
    const health = join(taskTmp(victim!.ID), "www", "health");
    rmSync(health);
    const two = await backendsOf(svc, 2, 30_000);
    expect(await answersOf(two.vip, 8080, 16)).not.toContain(victim!.ID);
    writeFileSync(health, "ok\n");
    const back = await backendsOf(svc, 3, 30_000);
    expect(back.vip).toBe(s.vip);
  });

  it("keeps the last known services while Nomad is down, also across an nkitd restart; converges when Nomad is back", async () => {
    const before = await backendsOf(svc, 3);
    await nomad.stopAgent();
    const down = await until(nomad, "status to say Nomad is unreachable", async () => {
      const st = await nkitJson<StatusResponse>(setup.socket, "status");
      return st.nomad && !st.nomad.connected ? st.nomad : undefined;
    });
    expect(down.lastError).not.toBe("");
    expect(await doctorCheck(setup.socket, "Nomad service sync")).toMatchObject({
      status: "warn",
      detail: expect.stringMatching(/unreachable .*the last known services keep working/),
    });
    expect((await answersOf(before.vip, 8080, 4)).size).toBeGreaterThan(0);
    // nkitd restarted while Nomad is away: the services come back from its state at once.
    await nkitd.stop();
    nkitd = await Nkitd.start(scope, ["--config", setup.config]);
    const kept = (await nomadServices()).find((x) => x.name === before.name);
    expect(kept?.vip).toBe(before.vip);
    expect(kept?.backends.length).toBe(3);
    expect((await answersOf(before.vip, 8080, 4)).size).toBeGreaterThan(0);

    await nomad.startAgain();
    await until(nomad, "the sync to reconnect", async () => {
      const st = await nkitJson<StatusResponse>(setup.socket, "status");
      return st.nomad?.connected ? true : undefined;
    });
    const after = await backendsOf(svc, 3);
    expect(after.vip).toBe(before.vip);
    // One nkit service per Nomad service: no duplicate after the re-snapshot.
    expect(
      (await nomadServices()).filter((x) => x.name.startsWith("nomad.default.")).map((x) => x.name),
    ).toEqual([before.name]);
    // Changes after the restart still arrive: a second job's service appears, the first one's goes.
    const svc2 = `nkweb2-${suffix}`;
    const id2 = `nksvc2-${suffix}`;
    await nomad.runJob(job(id2, svc2, 1));
    await backendsOf(svc2, 1);
    await nomad.stopJob(id);
    await until(nomad, `service ${svc} to go`, async () =>
      (await nomadServices()).some((x) => x.name === before.name) ? undefined : true,
    );
    await nomad.stopJob(id2);
    await until(nomad, "every Nomad service to go", async () =>
      (await nomadServices()).length === 0 ? true : undefined,
    );
  });
});
