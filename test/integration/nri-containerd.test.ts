// NriPlugin against a real containerd (1.7.24 from trixie) with NRI enabled, driven through CRI.
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NriConfigureInfo, NriPlugin, type NriPodSandbox } from "../../src/nri/index.js";
import { ContainerdEnv, containerdUnavailable, sleep } from "./nri-env.js";

const skip = containerdUnavailable();

interface Seen {
  kind: "run" | "stop" | "remove";
  pod: NriPodSandbox;
  at: number;
}

describe.skipIf(skip !== undefined)(
  `NRI plugin with real containerd${skip ? ` (skipped: ${skip})` : ""}`,
  () => {
    let env: ContainerdEnv;
    let plugin: NriPlugin;
    const seen: Seen[] = [];
    const syncs: NriPodSandbox[][] = [];
    let configured: NriConfigureInfo | undefined;

    async function waitFor<T>(what: string, fn: () => T | undefined, timeoutMs = 10_000): Promise<T> {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const v = fn();
        if (v !== undefined) return v;
        if (Date.now() > until) throw new Error(`timed out waiting for ${what}\n${env.logTail(20)}`);
        await sleep(20);
      }
    }

    beforeAll(async () => {
      env = new ContainerdEnv();
      try {
        env.prepare();
        await env.start();
      } catch (e) {
        await env.teardown();
        throw e;
      }
      plugin = new NriPlugin({
        socketPath: env.nriSocket,
        name: "nkit",
        index: "10",
        env: {},
        backoff: { initialMs: 50, maxMs: 500 },
        handlers: {
          configure: (info) => {
            configured = info;
          },
          synchronize: (pods) => {
            syncs.push(pods);
          },
          runPodSandbox: (pod) => {
            seen.push({ kind: "run", pod, at: Date.now() });
            if (pod.labels["nkit-test/fail"] === "true") throw new Error("refusing pod on purpose");
          },
          stopPodSandbox: (pod) => {
            seen.push({ kind: "stop", pod, at: Date.now() });
          },
          removePodSandbox: (pod) => {
            seen.push({ kind: "remove", pod, at: Date.now() });
          },
        },
      });
    }, 120_000);

    afterAll(async () => {
      await plugin?.stop();
      await env?.teardown();
      expect(existsSync(env.dir)).toBe(false);
    }, 120_000);

    it("registers, is configured and receives Synchronize", async () => {
      const synchronized = new Promise((r) => plugin.once("synchronized", r));
      plugin.start();
      await synchronized;
      expect(plugin.connected).toBe(true);
      expect(configured?.runtimeName).toBe("containerd");
      expect(configured?.runtimeVersion).toMatch(/^1\.7\.|^2\./);
      expect(syncs.at(-1)).toEqual([]);
    });

    it("sees RunPodSandbox with the netns path, then Stop and Remove", async () => {
      const cri = env.cri!;
      const id = await cri.runPod(
        {
          name: "web",
          uid: "uid-web-1",
          namespace: "nkit-it",
          labels: { app: "web" },
          annotations: { "nkit.io/test": "yes" },
        },
        env.podLogDir("web"),
      );
      const run = await waitFor("RUN", () => seen.find((s) => s.kind === "run" && s.pod.id === id));
      const netns = await cri.podNetns(id);
      expect(netns).toMatch(new RegExp(`^${env.dir}/state/.*/netns/cni-`));
      expect(run.pod).toMatchObject({
        id,
        name: "web",
        uid: "uid-web-1",
        namespace: "nkit-it",
        netnsPath: netns,
      });
      expect(run.pod.labels.app).toBe("web");
      expect(run.pod.annotations["nkit.io/test"]).toBe("yes");
      expect(run.pod.pid).toBeGreaterThan(0);
      expect(run.pod.namespaces.map((n) => n.type)).toContain("network");

      await cri.call("StopPodSandbox", { pod_sandbox_id: id });
      const stop = await waitFor("STOP", () => seen.find((s) => s.kind === "stop" && s.pod.id === id));
      expect(stop.pod.name).toBe("web");
      await cri.call("RemovePodSandbox", { pod_sandbox_id: id });
      await waitFor("REMOVE", () => seen.find((s) => s.kind === "remove" && s.pod.id === id));
      expect(seen.filter((s) => s.pod.id === id).map((s) => s.kind)).toEqual(["run", "stop", "remove"]);
      expect(existsSync(netns!)).toBe(false);
    });

    it("a RUN handler error fails the pod with our message (fail-closed)", async () => {
      const cri = env.cri!;
      const err = await cri
        .runPod(
          { name: "bad", uid: "uid-bad-1", namespace: "nkit-it", labels: { "nkit-test/fail": "true" } },
          env.podLogDir("bad"),
        )
        .then(
          () => undefined,
          (e: unknown) => e,
        );
      expect(err).toBeInstanceOf(Error);
      expect(String((err as Error).message)).toMatch(
        /NRI RunPodSandbox failed: .*nkit: runPodSandbox for pod nkit-it\/bad .* refusing pod on purpose/,
      );
      const run = seen.find((s) => s.kind === "run" && s.pod.name === "bad");
      expect(run).toBeDefined();
      // containerd rolls back and notifies STOP and REMOVE for the failed pod, still connected
      await waitFor("STOP after failed RUN", () =>
        seen.find((s) => s.kind === "stop" && s.pod.id === run?.pod.id),
      );
      await waitFor("REMOVE after failed RUN", () =>
        seen.find((s) => s.kind === "remove" && s.pod.id === run?.pod.id),
      );
      expect(plugin.connected).toBe(true);
      expect(await cri.listPods()).not.toContain(run?.pod.id);
    });

    it("reconnects and resynchronizes after containerd restarts; Synchronize lists running pods", async () => {
      const cri = env.cri!;
      const id = await cri.runPod(
        { name: "keep", uid: "uid-keep-1", namespace: "nkit-it" },
        env.podLogDir("keep"),
      );
      await waitFor("RUN keep", () => seen.find((s) => s.kind === "run" && s.pod.id === id));
      const disconnected = new Promise((r) => plugin.once("disconnected", r));
      await env.stopContainerd();
      await disconnected;
      expect(plugin.connected).toBe(false);
      const resynced = new Promise((r) => plugin.once("synchronized", r));
      await env.start();
      await resynced;
      const pods = syncs.at(-1) ?? [];
      const kept = pods.find((p) => p.id === id);
      expect(kept?.name).toBe("keep");
      expect(kept?.netnsPath).toMatch(/\/netns\/cni-/);
      expect(kept?.pid).toBeGreaterThan(0);
      await cri.call("StopPodSandbox", { pod_sandbox_id: id });
      await cri.call("RemovePodSandbox", { pod_sandbox_id: id });
      // per the spec (§6.4), pods from before the restart produce no STOP/REMOVE events
      await sleep(300);
      expect(seen.filter((s) => s.pod.id === id).map((s) => s.kind)).toEqual(["run"]);
    });
  },
);
