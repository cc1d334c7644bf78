// The labels an allocation's endpoint gets, from Nomad's API answer or from later Nomads' CNI args.
import { describe, expect, it } from "vitest";
import { allocationFromArgs, allocationLabels } from "../../src/nomad/allocations.js";

describe("Nomad allocation identity", () => {
  it("labels an allocation with namespace, job, group, tasks and id", () => {
    expect(
      allocationLabels({ id: "a1", namespace: "prod", job: "web", group: "g", tasks: ["api", "sidecar"] }),
    ).toEqual({
      "nkit.io/nomad-namespace": "prod",
      "nkit.io/nomad-job": "web",
      "nkit.io/nomad-group": "g",
      "nkit.io/nomad-tasks": "api,sidecar",
      "nkit.io/nomad-alloc": "a1",
    });
  });

  it("takes NOMAD_* CNI args when a Nomad sends them, and nothing without an allocation and a job", () => {
    const args = { NOMAD_ALLOC_ID: "x", NOMAD_JOB_ID: "web", NOMAD_GROUP_NAME: "g", NOMAD_NAMESPACE: "ns" };
    expect(allocationFromArgs("x", args)).toEqual({
      id: "x",
      namespace: "ns",
      job: "web",
      group: "g",
      tasks: [],
    });
    expect(allocationFromArgs("x", { K8S_POD_NAME: "p" })).toBeUndefined();
    expect(allocationFromArgs("x", { NOMAD_ALLOC_ID: "x" })).toBeUndefined();
  });
});
