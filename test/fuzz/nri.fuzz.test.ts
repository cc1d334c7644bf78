// The NRI messages containerd sends the plugin, under fuzzing: any bytes and any byte-level mutation
// of real requests (RunPodSandbox with a pod and its netns, Synchronize with pods, StateChange,
// Configure) decode into plain values with the documented defaults or fail with an Error, which the
// ttrpc server answers as a status; a decoded pod always has string fields and a netns path that is
// either absent or a non-empty string (what the pod handlers rely on).
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { nri } from "../../src/nri/gen/api.js";
import {
  decodeConfigure,
  decodePodRequest,
  decodeStateChange,
  decodeSynchronize,
} from "../../src/nri/types.js";
import { params } from "./fuzz.js";

const api = nri.pkg.api.v1alpha1;
const pod = {
  id: "0123456789abcdef",
  name: "web",
  uid: "uid-1",
  namespace: "default",
  labels: { app: "web" },
  annotations: { a: "b" },
  linux: { namespaces: [{ type: "network", path: "/var/run/netns/cni-1" }], cgroups_path: "/kubepods/x" },
  pid: 42,
  ips: ["10.0.0.1"],
};
const valid = [
  api.RunPodSandboxRequest.encode({ pod }).finish(),
  api.SynchronizeRequest.encode({
    pods: [pod, pod],
    containers: [{ id: "c", pod_sandbox_id: "p" }],
    more: true,
  }).finish(),
  api.StateChangeEvent.encode({ event: 1, pod }).finish(),
  api.ConfigureRequest.encode({
    config: "x",
    runtime_name: "containerd",
    runtime_version: "1.7.24",
  }).finish(),
].map((b) => Buffer.from(b));

/** Bytes: random, or a real message with bytes flipped, cut, or spliced in. */
const bytes = fc.oneof(
  fc.uint8Array({ maxLength: 300 }),
  fc
    .tuple(
      fc.constantFrom(...valid),
      fc.nat(),
      fc.integer({ min: 0, max: 255 }),
      fc.uint8Array({ maxLength: 6 }),
      fc.nat(3),
    )
    .map(([m, at, byte, junk, how]) => {
      const i = at % (m.length + 1);
      if (how === 0) return Buffer.concat([m.subarray(0, i), junk, m.subarray(i)]);
      if (how === 1) return m.subarray(0, i);
      const c = Buffer.from(m);
      if (i < c.length) c[i] = byte;
      return c;
    }),
);

const wellFormed = (p: ReturnType<typeof decodePodRequest>) => {
  for (const k of [
    "id",
    "name",
    "uid",
    "namespace",
    "runtimeHandler",
    "cgroupParent",
    "cgroupsPath",
  ] as const) {
    expect(typeof p[k]).toBe("string");
  }
  if (p.netnsPath !== undefined) expect(p.netnsPath).not.toBe("");
  for (const [k, v] of Object.entries(p.labels))
    expect(typeof k === "string" && typeof v === "string").toBe(true);
};

describe("NRI messages (fuzz)", () => {
  it("decodes the real requests", () => {
    expect(decodePodRequest(valid[0]!).netnsPath).toBe("/var/run/netns/cni-1");
    expect(decodeSynchronize(valid[1]!).pods).toHaveLength(2);
  });

  it("decodes any bytes into well-formed values or fails with an Error", () => {
    fc.assert(
      fc.property(bytes, (b) => {
        const attempts: (() => void)[] = [
          () => wellFormed(decodePodRequest(b)),
          () => decodeSynchronize(b).pods.forEach(wellFormed),
          () => wellFormed(decodeStateChange(b).pod),
          () => void decodeConfigure(b),
        ];
        for (const a of attempts) {
          try {
            a();
          } catch (e) {
            if (!(e instanceof Error) || e.name === "AssertionError") throw e;
          }
        }
      }),
      params(),
    );
  });
});
