// What nkit-cni attached, by container id: which network, interface, netns and mode. GC and CHECK
// need it (IPAM and endpoint records do not say which CNI network made them, and endpoints wired by
// the NRI hook or the API must never be collected by a CNI GC). Persisted atomically on every change.
import type { Logger } from "../log.js";
import { RecordStore } from "../state/json-store.js";
import { arrayOf, count, ipAddress, object, oneOf, optional, string } from "../state/shape.js";
import type { CniMode, PortMapping } from "./protocol.js";

export interface Attachment {
  containerId: string;
  ifName: string;
  /** The CNI network name ("name" of the conflist). */
  network: string;
  mode: CniMode;
  netns: string;
  addresses: { ipv4?: string; ipv6?: string };
  /** From the portMappings capability; recorded for the service load-balancer. */
  portMappings: PortMapping[];
  createdAt: string;
}

const portMappingShape = object<PortMapping>({
  hostPort: count,
  containerPort: count,
  protocol: oneOf("tcp", "udp", "sctp"),
  hostIP: optional(string),
});

const attachmentShape = object<Attachment>({
  containerId: string,
  ifName: string,
  network: string,
  mode: oneOf("ipam", "wire"),
  netns: string,
  addresses: object<Attachment["addresses"]>({ ipv4: optional(ipAddress(4)), ipv6: optional(ipAddress(6)) }),
  portMappings: arrayOf(portMappingShape),
  createdAt: string,
});

/** The attachments (`cni-attachments/` in the state dir, one file each), read once and written through. */
export type AttachmentStore = RecordStore<Attachment>;

export function openAttachmentStore(dir: string, log?: Logger): AttachmentStore {
  return RecordStore.inDirectory({
    dir,
    version: 1,
    record: attachmentShape,
    key: (a) => a.containerId,
    legacyFile: { path: `${dir}.json`, field: "attachments" },
    // Attachments of running containers, which die with the boot that loses the page cache.
    unsynced: {
      onDiscarded: (path, movedTo, why) =>
        log?.warn(
          { path, movedTo, err: why },
          "a CNI attachment torn by a power loss was moved aside; its container died with that boot",
        ),
    },
    fix: "restore it from a backup; moving it aside drops the host ports of running nerdctl and Nomad workloads until they start again",
  });
}
