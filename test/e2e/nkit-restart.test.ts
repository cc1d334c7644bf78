// nkit across restarts on a real containerd (lane NKIT_E2E_CONTAINERD=1.7|2), conflist
// [nkit-cni (mode ipam), loopback] + nkitd's NRI plugin, real nkitd from dist/:
//   - nkitd SIGKILLed: running pods keep forwarding (ping v4+v6 between pods while nkitd is down); a pod
//     removed meanwhile (its CNI DEL is queued by nkit-cni, no NRI events reach anyone) is collected
//     when nkitd starts again; the survivors are adopted (`nkit endpoint list`), and nothing leaks;
//   - containerd restarted with pods running: the plugin reconnects and Synchronize reconciles (no
//     endpoint lost); a pod removed after the restart gets no NRI STOP/REMOVE, but its CNI DEL still
//     reaches nkitd, and nothing is left.
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hostIfName } from "../../src/datapath/naming.js";
import { type ContainerdEnv, IMAGES, laneFromEnv, type Pod, startContainerd, waitFor } from "./env/index.js";
import {
  type EndpointJson,
  leftovers,
  type Nkitd,
  nkitContainerdOptions,
  nkitdEmpty,
  podRef,
  podV4,
  podV6,
  restartContainerd,
  startNkitd,
  uniqueNkitNetwork,
} from "./env/nkit.js";

const lane = laneFromEnv();
const network = uniqueNkitNetwork();

describe(`nkit restarts (nkitd SIGKILL, containerd restart), containerd lane ${lane}`, () => {
  let env: ContainerdEnv | undefined;
  let nkitd: Nkitd | undefined;

  beforeAll(async () => {
    env = await startContainerd(nkitContainerdOptions(lane, "nkit-restart", network));
    nkitd = await startNkitd(env);
    await nkitd.waitNri();
  });

  afterAll(async () => {
    await env?.stop();
  });

  async function ping(e: ContainerdEnv, container: string, target: string): Promise<void> {
    const r = await e.execSync(container, ["ping", "-c", "3", "-i", "0.2", "-W", "2", target], 15);
    expect(r.exitCode, `ping ${target}: ${r.stdout}${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/3 packets received/);
  }

  it("nkitd SIGKILLed: pods keep forwarding, a pod removed meanwhile is collected, survivors are adopted", async () => {
    const e = env!;
    const n = nkitd!;
    const a = await e.runPod({ name: "kill-a" });
    n.track(a.id);
    const b = await e.runPod({ name: "kill-b" });
    n.track(b.id);
    const c = await e.runPod({ name: "kill-c" });
    n.track(c.id);
    const removed: Pod[] = [];
    try {
      const client = await e.createAndStartContainer(a, IMAGES.busybox, ["/bin/sleep", "3600"]);
      await ping(e, client, podV4(b));
      const before = await n.cli<EndpointJson[]>(["endpoint", "list"]);

      await n.kill("SIGKILL");
      expect(n.running).toBe(false);
      // the datapath is pinned: traffic between running pods does not need nkitd
      await ping(e, client, podV4(b));
      await ping(e, client, podV6(b));
      // a pod goes away while nkitd is down: no NRI plugin is connected, and nkit-cni queues the DEL
      await e.stopPod(c.id);
      await e.removePod(c.id);
      removed.push(c);
      expect(existsSync(`${n.runDir}/cni-del-queue`), "nkit-cni queued the DEL").toBe(true);

      const from = n.lines.length;
      await n.start();
      const ready = await n.waitLog((l) => l.msg === "datapath ready", 5_000, from);
      expect(ready.endpoints, "endpoints adopted at start").toBeGreaterThanOrEqual(2);
      await n.waitNri(from);
      const after = await n.cli<EndpointJson[]>(["endpoint", "list"]);
      for (const p of [a, b]) {
        const was = before.find((x) => x.id === p.id);
        const now = after.find((x) => x.id === p.id);
        expect(now, `endpoint ${p.name} adopted`).toBeDefined();
        expect(now?.hostIfName).toBe(was?.hostIfName);
        expect(now?.addresses).toEqual(was?.addresses);
      }
      expect(after.map((x) => x.id)).not.toContain(c.id);
      expect(await leftovers(n, [podRef(c)])).toEqual([]);
      await ping(e, client, podV4(b));
      await ping(e, client, podV6(b));
    } finally {
      for (const p of [a, b, c].filter((x) => !removed.includes(x))) {
        await e.stopPod(p.id);
        await e.removePod(p.id);
      }
    }
    expect(await leftovers(n, [podRef(a), podRef(b), podRef(c)])).toEqual([]);
    expect(await nkitdEmpty(n)).toEqual([]);
  });

  it("containerd restarted with pods running: reconnect, Synchronize keeps them, a pod removed afterwards leaves nothing", async () => {
    const e = env!;
    const n = nkitd!;
    const a = await e.runPod({ name: "rs-a" });
    n.track(a.id);
    const b = await e.runPod({ name: "rs-b" });
    n.track(b.id);
    const done: Pod[] = [];
    try {
      const client = await e.createAndStartContainer(a, IMAGES.busybox, ["/bin/sleep", "3600"]);
      await ping(e, client, podV4(b));
      const from = n.lines.length;
      await restartContainerd(e);
      await n.waitLog((l) => l.msg === "NRI disconnected; reconnecting", 20_000, from);
      await n.waitLog((l) => l.msg === "NRI connected", 30_000, from);
      const sync = await n.waitLog((l) => l.msg === "synchronized with the runtime", 30_000, from);
      expect(sync.pods).toBe(2);
      expect(sync.collected).toBe(0);
      const status = await n.cli<{ endpointCount: number }>(["status"]);
      expect(status.endpointCount).toBe(2);
      await ping(e, client, podV4(b));
      await ping(e, client, podV6(b));

      // remove pod B through the restarted containerd
      const mark = n.lines.length;
      await e.stopPod(b.id);
      await e.removePod(b.id);
      done.push(b);
      const events = n.lines
        .slice(mark)
        .filter((l) => typeof l.msg === "string" && l.msg.startsWith("NRI ") && l.id === b.id)
        .map((l) => l.msg);
      // containerd's NRI keeps pod state in memory: pods from before its restart get no STOP/REMOVE
      // (nri-protocol.md §6.4); CNI DEL (on StopPodSandbox) is what releases them.
      console.info(
        `[nkit-restart] lane ${lane}: NRI events for a pod from before the restart: ${JSON.stringify(events)}`,
      );
      await waitFor(
        "its host device to go",
        () => (existsSync(`/sys/class/net/${hostIfName(b.id)}`) ? undefined : true),
        5_000,
      );
      expect(await leftovers(n, [podRef(b)])).toEqual([]);
      expect((await n.cli<EndpointJson[]>(["endpoint", "list"])).map((x) => x.id)).toEqual([a.id]);
    } finally {
      for (const p of [a, b].filter((x) => !done.includes(x))) {
        await e.stopPod(p.id);
        await e.removePod(p.id);
      }
    }
    expect(await leftovers(n, [podRef(a), podRef(b)])).toEqual([]);
    expect(await nkitdEmpty(n)).toEqual([]);
  });
});
