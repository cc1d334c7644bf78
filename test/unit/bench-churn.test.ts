// The churn benchmark's verdict (bench/lib/churn.ts): which counts must come back once every pod is
// removed, and which are only reported. Creating and removing the pods is the benchmark's.
import { describe, expect, it } from "vitest";
import { leaksOf, type NkitFootprint } from "../../bench/lib/churn.js";

const base: NkitFootprint = {
  endpointRecords: 0,
  ipamAllocations: 0,
  cniAttachments: 0,
  hostDevices: 0,
  mapEndpoints: 0,
  mapDevices: 0,
  podNetns: 0,
  nkitdFds: 98,
  nkitdRssMiB: 85,
};

describe("churn leak verdict", () => {
  it("names every pod-held count that did not come back, and only those", () => {
    expect(leaksOf(base, { ...base })).toEqual([]);
    expect(leaksOf(base, { ...base, ipamAllocations: 2, mapEndpoints: 4 })).toEqual([
      "ipamAllocations: 0 -> 2",
      "mapEndpoints: 0 -> 4",
    ]);
  });

  it("reports nkitd's descriptors and memory without calling them a leak", () => {
    expect(leaksOf(base, { ...base, nkitdFds: 101, nkitdRssMiB: 120 })).toEqual([]);
  });
});
