// Which device kind the datapath builds endpoints with, decided once per start from the kernel's
// features: an explicit `netkit` on a kernel without it fails here rather than on every pod.
import { probeNetkit, probeTcx } from "../bpf/probe.js";
import { NotSupportedError } from "../errors.js";
import type { Logger } from "../log.js";
import type { DatapathMode } from "./store.js";

export type DatapathModeSetting = "auto" | DatapathMode;

export function resolveMode(setting: DatapathModeSetting, log?: Logger): DatapathMode {
  const tcx = probeTcx();
  const netkit = probeNetkit();
  if (setting === "netkit") {
    if (!netkit.supported) throw new NotSupportedError("datapath: netkit", netkit.need);
    return "netkit";
  }
  if (setting === "auto" && netkit.supported) return "netkit";
  if (!tcx.supported) throw new NotSupportedError("datapath: veth + tcx", tcx.need);
  if (setting === "auto")
    log?.info({ reason: netkit.supported ? "" : netkit.reason }, "netkit unavailable: using veth + tc");
  return "veth";
}
