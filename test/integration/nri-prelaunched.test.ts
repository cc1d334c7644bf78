// The plugin as a pre-launched NRI plugin: containerd execs it from plugin_path with the socket on
// fd 3 and NRI_PLUGIN_SOCKET/NAME/IDX as its whole environment. Runs the built dist/ (npm run build).
import { existsSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ContainerdEnv, containerdUnavailable, sleep } from "./nri-env.js";

const dist = resolve(import.meta.dirname, "../../dist/nri/index.js");
const skip =
  containerdUnavailable() ?? (existsSync(dist) ? undefined : "dist/nri/index.js missing: run npm run build");

interface Rec {
  env?: Record<string, string>;
  connected?: { mode: string; endpoint: string; name: string; index: string };
  configure?: { config: string; runtimeName: string };
  run?: { id: string; name: string; netnsPath?: string; pid?: number };
  stop?: { id: string };
  remove?: { id: string };
}

/** The plugin executable: CommonJS (no package.json next to it) that imports the ESM dist build. */
function pluginScript(out: string): string {
  return `#!${process.execPath}
const { appendFileSync } = require("node:fs");
const rec = (o) => appendFileSync(${JSON.stringify(out)}, JSON.stringify(o) + "\\n");
rec({ env: process.env });
import(${JSON.stringify(dist)}).then(({ NriPlugin }) => {
  const p = new NriPlugin({
    handlers: {
      configure: (i) => rec({ configure: i }),
      runPodSandbox: (pod) => rec({ run: pod }),
      stopPodSandbox: (pod) => rec({ stop: pod }),
      removePodSandbox: (pod) => rec({ remove: pod }),
    },
  });
  p.on("connected", (i) => rec({ connected: i }));
  p.on("stopped", () => process.exit(0));
  p.start();
}, (e) => { rec({ error: String(e) }); process.exit(1); });
`;
}

describe.skipIf(skip !== undefined)(`pre-launched NRI plugin${skip ? ` (skipped: ${skip})` : ""}`, () => {
  let env: ContainerdEnv;
  let out: string;

  function records(): Rec[] {
    if (!existsSync(out)) return [];
    return readFileSync(out, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Rec);
  }

  async function waitFor<T>(what: string, fn: (r: Rec[]) => T | undefined, timeoutMs = 10_000): Promise<T> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const v = fn(records());
      if (v !== undefined) return v;
      if (Date.now() > until) throw new Error(`timed out waiting for ${what}\n${env.logTail(20)}`);
      await sleep(25);
    }
  }

  beforeAll(async () => {
    env = new ContainerdEnv();
    out = join(env.dir, "prelaunched.jsonl");
    try {
      env.prepare({ plugins: { "10-nkit": pluginScript(out) } });
      await env.start();
    } catch (e) {
      await env.teardown();
      throw e;
    }
  }, 120_000);

  afterAll(async () => {
    await env?.teardown();
  }, 120_000);

  it("is launched with fd 3, registers, is configured and gets pod events", async () => {
    const e = await waitFor("start", (r) => r.find((x) => x.env)?.env);
    expect(e).toEqual({ NRI_PLUGIN_NAME: "nkit", NRI_PLUGIN_IDX: "10", NRI_PLUGIN_SOCKET: "3" });
    const c = await waitFor("connected", (r) => r.find((x) => x.connected)?.connected);
    expect(c).toEqual({ mode: "pre-launched", endpoint: "fd 3", name: "nkit", index: "10" });
    expect((await waitFor("configure", (r) => r.find((x) => x.configure)?.configure)).runtimeName).toBe(
      "containerd",
    );
    const cri = env.cri!;
    const id = await cri.runPod(
      { name: "pre", uid: "uid-pre-1", namespace: "nkit-it" },
      env.podLogDir("pre"),
    );
    const run = await waitFor("run", (r) => r.find((x) => x.run?.id === id)?.run);
    expect(run.name).toBe("pre");
    expect(run.netnsPath).toBe(await cri.podNetns(id));
    await cri.call("StopPodSandbox", { pod_sandbox_id: id });
    await cri.call("RemovePodSandbox", { pod_sandbox_id: id });
    await waitFor("remove", (r) => r.find((x) => x.remove?.id === id)?.remove);
    expect(records().some((x) => x.stop?.id === id)).toBe(true);
  });
});
