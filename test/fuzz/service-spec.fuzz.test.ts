// Service definitions (service files, `services:`, `nkit service add` through the API) under fuzzing:
// any value and every one-field mutation of a full definition is a service or an NkitError naming
// the key, never another exception.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { lbEntries, parseServiceSpec } from "../../src/services/spec.js";
import { acceptsOrRefuses, jsonish, mutated, params } from "./fuzz.js";

const FULL = {
  name: "web",
  vip: "10.96.0.10",
  ports: [
    { port: 80, protocol: "tcp", targetPort: 8080 },
    { port: 53, protocol: "udp" },
  ],
  backends: ["10.47.0.5", "10.47.0.6"],
  affinity: "client-ip",
  affinityTimeoutSeconds: 60,
  external: true,
};

describe("service definitions (fuzz)", () => {
  it("accepts the full definition", () => {
    expect(lbEntries(parseServiceSpec(FULL, "svc")).length).toBe(2);
  });

  it("answers any value and every one-field mutation with a service or an NkitError", () => {
    fc.assert(
      fc.property(fc.oneof(jsonish, mutated(FULL)), (raw) => {
        acceptsOrRefuses(() => lbEntries(parseServiceSpec(raw, "svc")));
      }),
      params(),
    );
  });
});
