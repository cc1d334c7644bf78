// Nomad allocations on nkit against a real Nomad v1.6.5 agent (exec driver): the client fingerprints
// nkit-cni from the cni_path `nkit install` filled, a `network { mode = "cni/nkit" }` group gets an
// nkit address on eth0 (v4 + v6), the host and other allocations reach it, and stopping the job
// leaves nothing behind.
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { NkitClient } from "../../src/api/client.js";
import { hostIfName } from "../../src/datapath/naming.js";
import { RUN_ID } from "../helpers/names.js";
import {
  type EndpointMapEntry,
  Nkitd,
  type NkitdSetup,
  nkitJson,
  type OutsideNetns,
  outsideBehindUplink,
} from "../helpers/nkitd.js";
import { waitFor } from "../helpers/process.js";
import { Scope } from "../helpers/scope.js";
import { run } from "../helpers/sys.js";
import { type NomadAgent, type NomadAlloc, nomadUnavailable, startNomadLane } from "./env.js";
import { getFrom, httpGet, until } from "./http.js";

const skip = nomadUnavailable();
const scope = new Scope();
let nomad: NomadAgent;
let api: NkitClient;
let setup: NkitdSetup;
let nkitd: Nkitd;
let outside: OutsideNetns;

const job = (name: string, text: string, count = 1) => `
job "${name}" {
  datacenters = ["dc1"]
  type = "service"
  group "web" {
    count = ${count}
    reschedule {
      delay          = "5s"
      delay_function = "constant"
      unlimited      = true
    }
    network {
      mode = "cni/nkit"
      port "http" { to = 8080 }
    }
    task "httpd" {
      driver = "exec"
      kill_timeout = "1s"
      config {
        command = "/bin/busybox"
        args = ["sh", "-c", "/bin/busybox mkdir -p /tmp/www && echo ${text} > /tmp/www/index.html && exec /bin/busybox httpd -f -p 8080 -h /tmp/www"]
      }
      resources {
        cpu    = 50
        memory = 32
      }
    }
  }
}
`;

async function waitForLabels(id: string): Promise<Record<string, string>> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const ep = (await api.listEndpoints()).endpoints.find((e) => e.id === id);
    if (ep?.labels["nkit.io/nomad-job"]) return ep.labels;
    if (Date.now() > deadline)
      throw new Error(`endpoint ${id} got no Nomad labels: ${JSON.stringify(ep?.labels)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

interface Wired {
  id: string;
  addresses: { ipv4: string; ipv6: string };
  hostPort?: number;
}

/** What an allocation had while it ran, read from nkitd (and Nomad's port, when it has one). */
async function wiredOf(alloc: NomadAlloc): Promise<Wired> {
  const ep = (await api.listEndpoints()).endpoints.find((e) => e.id === alloc.ID);
  if (!ep) throw new Error(`allocation ${alloc.ID} has no endpoint`);
  const hostPort = alloc.AllocatedResources?.Shared?.Ports?.find((p) => p.Label === "http")?.Value;
  return { id: alloc.ID, addresses: ep.addresses, ...(hostPort ? { hostPort } : {}) };
}

/** What of a gone allocation is still there: endpoint, reservation, device, map entries, host ports. */
async function leftOf(w: Wired): Promise<string[]> {
  const left: string[] = [];
  if ((await api.listEndpoints()).endpoints.some((e) => e.id === w.id)) left.push("endpoint");
  if ((await api.ipam()).allocations.some((a) => a.id === w.id)) left.push("ipam reservation");
  if (existsSync(`/sys/class/net/${hostIfName(w.id)}`)) left.push(`device ${hostIfName(w.id)}`);
  const map = await nkitJson<{ entries: EndpointMapEntry[] }>(
    setup.socket,
    "bpf",
    "map",
    "dump",
    "nk_endpoints",
  );
  for (const e of map.entries)
    if (e.key.addr === w.addresses.ipv4 || e.key.addr === w.addresses.ipv6)
      left.push(`nk_endpoints ${e.key.addr}`);
  const ports = (await api.listServices()).services.filter((s) => s.origin === w.id);
  for (const s of ports) left.push(`host port ${s.name}`);
  return left;
}

/** Waits until nothing of each allocation is left (Nomad's DEL comes some time after the stop). */
async function leavesNothing(...wired: Wired[]): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const left = (
      await Promise.all(wired.map(async (w) => (await leftOf(w)).map((x) => `${w.id}: ${x}`)))
    ).flat();
    if (left.length === 0) return;
    if (Date.now() > deadline) throw new Error(`left behind: ${left.join(", ")}\n${nomad.logTail(20)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

beforeAll(async () => {
  if (skip) return;
  ({ setup, nkitd, api, nomad } = await startNomadLane(scope, "nomad", {
    // The uplink's far end is "another host"; set up before nkitd starts, so its address is the host's.
    beforeNkitd: async (s) => {
      outside = await outsideBehindUplink(scope, s, "nmo");
    },
  }));
}, 180_000);

afterAll(() => scope.close(), 180_000);

describe.skipIf(skip !== undefined)(`Nomad allocations on nkit${skip ? ` (skipped: ${skip})` : ""}`, () => {
  it("fingerprints nkit-cni and wires a cni/nkit allocation with v4 and v6 that the host and other allocations reach; stop leaves nothing", async () => {
    const nodes = await nomad.get<{ ID: string }[]>("/v1/nodes");
    const node = await nomad.get<{ Attributes: Record<string, string> }>(`/v1/node/${nodes[0]!.ID}`);
    expect(node.Attributes["plugins.cni.version.nkit-cni"]).toBeTruthy();

    const id = `nkweb-${RUN_ID}-${process.pid}`.toLowerCase();
    await nomad.runJob(job(id, "hello-nomad", 2));
    const allocs = await nomad.running(id, 2);
    const eps = await api.listEndpoints();
    const mine = allocs.map((a) => eps.endpoints.find((e) => e.id === a.ID));
    for (const [i, ep] of mine.entries()) {
      expect(ep, `endpoint of allocation ${allocs[i]!.ID}`).toBeDefined();
      expect(ep!.addresses.ipv4).toBeTruthy();
      expect(ep!.addresses.ipv6).toBeTruthy();
    }
    // Identity from Nomad's API (1.6.5 sends no CNI_ARGS): namespace, job, group, tasks, allocation.
    for (const alloc of allocs) {
      const labels = await waitForLabels(alloc.ID);
      expect(labels).toMatchObject({
        "nkit.io/nomad-namespace": "default",
        "nkit.io/nomad-job": id,
        "nkit.io/nomad-group": "web",
        "nkit.io/nomad-tasks": "httpd",
        "nkit.io/nomad-alloc": alloc.ID,
      });
    }
    const [a, b] = mine as [NonNullable<(typeof mine)[0]>, NonNullable<(typeof mine)[0]>];
    // The host reaches both, over both families.
    for (const ep of [a, b]) {
      expect(await httpGet(ep.addresses.ipv4, 8080)).toContain("hello-nomad");
      expect(await httpGet(ep.addresses.ipv6, 8080)).toContain("hello-nomad");
    }
    // One allocation reaches the other (from inside its netns, which Nomad named after it).
    const r = await run("nsenter", [
      `--net=/var/run/netns/${a.id}`,
      "--",
      "/bin/busybox",
      "wget",
      "-q",
      "-O",
      "-",
      `http://${b.addresses.ipv4}:8080/`,
    ]);
    expect(r.stdout).toContain("hello-nomad");

    const gone = await Promise.all(allocs.map((x) => wiredOf(x)));
    await nomad.stopJob(id);
    await leavesNothing(...gone);
  });

  it("publishes port blocks as host ports: from the host, another allocation and another host; stop closes them", async () => {
    const id = `nkport-${RUN_ID}-${process.pid}`.toLowerCase();
    await nomad.runJob(job(id, "hello-port", 1));
    const [alloc] = await nomad.running(id, 1);
    const port = alloc!.AllocatedResources?.Shared?.Ports?.find((p) => p.Label === "http")?.Value;
    expect(port, "Nomad's dynamic port for http").toBeGreaterThan(0);
    const hostPort = port!;
    // From the host (its processes are in nkitd's cgroup: the socket hooks answer), both families.
    const host = { cgroup: setup.cgroup };
    for (const addr of ["127.0.0.1", "::1", outside.host4, outside.host6]) {
      expect(await getFrom(host, addr, hostPort), `host -> ${addr}:${hostPort}`).toContain("hello-port");
    }
    // From an allocation (its own, hairpin), as a process of the host's cgroup would.
    const inAlloc = { cgroup: setup.cgroup, netns: `/var/run/netns/${alloc!.ID}` };
    expect(await getFrom(inAlloc, outside.host4, hostPort)).toContain("hello-port");
    // From another host, through the uplink (per-packet, Maglev at tc ingress).
    for (const addr of [outside.host4, outside.host6]) {
      expect(await getFrom({ netns: outside.netns.path }, addr, hostPort), `outside -> ${addr}`).toContain(
        "hello-port",
      );
    }
    const gone = await wiredOf(alloc!);
    await nomad.stopJob(id);
    await leavesNothing(gone);
    expect(await getFrom({ netns: outside.netns.path }, outside.host4, hostPort)).toMatch(/^error:/);
  });

  it("a restarted Nomad client leaves its running allocations wired", async () => {
    const id = `nkrestart-${RUN_ID}-${process.pid}`.toLowerCase();
    await nomad.runJob(job(id, "hello-restart", 1));
    const [alloc] = await nomad.running(id, 1);
    const before = (await api.listEndpoints()).endpoints.find((e) => e.id === alloc!.ID);
    expect(before).toBeDefined();
    await nomad.restartAgent();
    const after = (await api.listEndpoints()).endpoints.find((e) => e.id === alloc!.ID);
    expect(after?.hostIfindex).toBe(before!.hostIfindex);
    expect(after?.addresses).toEqual(before!.addresses);
    expect((await nomad.running(id, 1))[0]!.ID).toBe(alloc!.ID);
    expect(await httpGet(before!.addresses.ipv4, 8080)).toContain("hello-restart");
    await nomad.stopJob(id);
    await until(nomad, "the allocation's endpoint to go", async () =>
      (await api.listEndpoints()).endpoints.some((e) => e.id === alloc!.ID) ? undefined : true,
    );
  });

  it("nkitd down during an ADD: Nomad's retries and DEL leave nothing; the rescheduled allocation comes up when nkitd is back", async () => {
    await nkitd.stop();
    const id = `nkdown-${RUN_ID}-${process.pid}`.toLowerCase();
    await nomad.runJob(job(id, "hello-again", 1));
    // The first allocation fails its network setup (ADD retried, then DEL, queued by nkit-cni).
    const failed = await until(
      nomad,
      "an allocation to fail",
      async () => {
        const a = (await nomad.allocations(id)).find((x) => x.ClientStatus === "failed");
        return a;
      },
      90_000,
    );
    nkitd = await Nkitd.start(scope, ["--config", setup.config]);
    const [running] = await nomad.running(id, 1, 120_000);
    expect(running!.ID).not.toBe(failed.ID);
    const eps = (await api.listEndpoints()).endpoints;
    expect(eps.map((e) => e.id)).toContain(running!.ID);
    expect(eps.map((e) => e.id)).not.toContain(failed.ID);
    const ipam = await api.ipam();
    expect(ipam.allocations.map((a) => a.id)).not.toContain(failed.ID);
    await waitFor(
      () => !existsSync(`/sys/class/net/${hostIfName(failed.ID)}`),
      "its host device to go",
      5_000,
    );
    const ep = eps.find((e) => e.id === running!.ID)!;
    expect(await httpGet(ep.addresses.ipv4, 8080)).toContain("hello-again");
    await nomad.stopJob(id);
    await until(nomad, "the allocation's endpoint to go", async () =>
      (await api.listEndpoints()).endpoints.some((e) => e.id === running!.ID) ? undefined : true,
    );
  });
  it("a failing task: the failed allocation and its rescheduled replacement leave nothing", async () => {
    const id = `nkfail-${RUN_ID}-${process.pid}`.toLowerCase();
    // Serves for a few seconds, then exits 3: no restart, one reschedule, then the job is failed.
    await nomad.runJob(`
job "${id}" {
  datacenters = ["dc1"]
  type = "service"
  group "web" {
    restart {
      attempts = 0
      mode     = "fail"
    }
    reschedule {
      attempts       = 1
      interval       = "1h"
      delay          = "5s"
      delay_function = "constant"
      unlimited      = false
    }
    network {
      mode = "cni/nkit"
      port "http" { to = 8080 }
    }
    task "flaky" {
      driver = "exec"
      kill_timeout = "1s"
      config {
        command = "/bin/busybox"
        args = ["sh", "-c", "/bin/busybox mkdir -p /tmp/www && echo flaky > /tmp/www/index.html && (/bin/busybox httpd -f -p 8080 -h /tmp/www &) && /bin/busybox sleep 6 && exit 3"]
      }
      resources {
        cpu    = 50
        memory = 32
      }
    }
  }
}
`);
    // Each allocation is wired and answers while its task runs, then fails.
    const wired = new Map<string, Wired>();
    const answers = new Map<string, string>();
    await until(
      nomad,
      "two allocations, each seen running and then failed",
      async () => {
        for (const a of await nomad.allocations(id)) {
          if (a.ClientStatus === "running" && !wired.has(a.ID)) {
            const w = await wiredOf(await nomad.allocation(a.ID));
            wired.set(a.ID, w);
            answers.set(
              a.ID,
              await httpGet(w.addresses.ipv4, 8080).catch((e: Error) => `error: ${e.message}`),
            );
          }
        }
        const all = await nomad.allocations(id);
        return all.length === 2 && all.every((a) => a.ClientStatus === "failed" && wired.has(a.ID))
          ? true
          : undefined;
      },
      120_000,
    );
    for (const answer of answers.values()) expect(answer).toContain("flaky");
    expect([...wired.values()].every((w) => w.hostPort !== undefined)).toBe(true);
    await leavesNothing(...wired.values());
    for (const w of wired.values())
      expect(await getFrom({ netns: outside.netns.path }, outside.host4, w.hostPort!)).toMatch(/^error:/);
    await nomad.stopJob(id);
  });
});
