// ContainerdClient against a real containerd (1.7.24 from trixie): a container's labels by namespace
// and id, an unknown container, and a containerd that is not there (a clear error, within the timeout).
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ContainerdClient, nerdctlContainerRef } from "../../src/containerd/containers.js";
import { ContainerdError } from "../../src/errors.js";
import { ContainerdEnv, containerdUnavailable, PAUSE_IMAGE } from "./nri-env.js";

const skip = containerdUnavailable();

describe.skipIf(skip !== undefined)(`containerd client${skip ? ` (skipped: ${skip})` : ""}`, () => {
  let env: ContainerdEnv;
  let client: ContainerdClient;
  beforeAll(async () => {
    env = new ContainerdEnv();
    try {
      env.prepare();
      await env.start();
    } catch (e) {
      await env.teardown();
      throw e;
    }
    client = new ContainerdClient({ socket: env.socket });
  });
  afterAll(async () => {
    client?.close();
    await env?.teardown();
  });

  it("reads a container's labels in its namespace, and nothing for an unknown one", async () => {
    const id = randomBytes(32).toString("hex");
    const ctr = (...args: string[]) =>
      execFileSync("/usr/bin/ctr", ["-a", env.socket, "-n", "k8s.io", ...args], { encoding: "utf8" });
    ctr("containers", "create", "--label", "nerdctl/name=web-1", "--label", "app=web", PAUSE_IMAGE, id);
    try {
      const ref = nerdctlContainerRef(`k8s.io-${id}`);
      expect(ref).toEqual({ namespace: "k8s.io", id });
      const c = await client.container(ref!.namespace, ref!.id);
      expect(c).toEqual({
        id,
        namespace: "k8s.io",
        labels: expect.objectContaining({ "nerdctl/name": "web-1", app: "web" }),
      });
      // Namespaces are separate: the same id elsewhere is unknown, as is an id nobody created.
      expect(await client.container("default", id)).toBeUndefined();
      expect(await client.container("k8s.io", randomBytes(32).toString("hex"))).toBeUndefined();
    } finally {
      ctr("containers", "delete", id);
    }
  });

  it("fails with a ContainerdError naming the container when containerd is not there", async () => {
    const gone = new ContainerdClient({ socket: `${env.dir}/absent.sock`, timeoutMs: 500 });
    try {
      const t0 = Date.now();
      const err = await gone.container("default", "abc").then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ContainerdError);
      expect((err as Error).message).toMatch(/get container default\/abc/);
      expect(Date.now() - t0).toBeLessThan(5_000);
    } finally {
      gone.close();
    }
  });
});
