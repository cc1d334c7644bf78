// Endpoint records, one JSON file per endpoint (<state>/endpoints/<host device>.json), replaced
// atomically. A record is written with phase "wiring" before the first kernel object exists, so
// after a crash at any point a restart knows which half-built endpoints to tear down or finish.
// Records live as long as the kernel objects they describe: one boot (no fsync, see perBoot).
import { join } from "node:path";
import { RecordStore } from "../state/json-store.js";
import { count, ipAddress, object, oneOf, optional, recordOf, string } from "../state/shape.js";

export type DatapathMode = "netkit" | "veth";

export interface EndpointRecord {
  id: string;
  /** Numeric id used as the BPF counter key; unique among live endpoints. */
  epNum: number;
  /** wiring: objects being made; wired: in service; unwiring: off the datapath, its device
   * being deleted (the record keeps its epNum until then). */
  phase: "wiring" | "wired" | "unwiring";
  mode: DatapathMode;
  netnsPath: string;
  podIfName: string;
  hostIfName: string;
  hostIfindex: number;
  addresses: { ipv4?: string; ipv6?: string };
  labels: Record<string, string>;
  createdAt: string;
}

const endpointRecordShape = object<EndpointRecord>({
  id: string,
  epNum: count,
  phase: oneOf("wiring", "wired", "unwiring"),
  mode: oneOf("netkit", "veth"),
  netnsPath: string,
  podIfName: string,
  hostIfName: string,
  hostIfindex: count,
  addresses: object<EndpointRecord["addresses"]>({
    ipv4: optional(ipAddress(4)),
    ipv6: optional(ipAddress(6)),
  }),
  labels: recordOf(string),
  createdAt: string,
});

/** Records by host device name, read once at start; nkitd is the only writer of its state dir. */
export type EndpointStore = RecordStore<EndpointRecord>;

export function openEndpointStore(stateDir: string): EndpointStore {
  return RecordStore.inDirectory({
    dir: join(stateDir, "endpoints"),
    version: 1,
    record: endpointRecordShape,
    key: (r) => r.hostIfName,
    // Devices, pins and map entries are gone after a reboot, and so is every pod's netns; a
    // /proc/PID/ns/net path would name some other process's netns by then.
    perBoot: true,
    fix: "restore it from a backup (its pod keeps forwarding meanwhile); moving it aside unwires that pod at the next start: its device is removed and its addresses are freed",
  });
}
