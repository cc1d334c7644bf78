// Typed slice of the addon for network namespaces (native/src/netns.c). Functions taking
// `netnsPath: string | null` run their work on a helper thread inside that netns (null: our own).
import { loadAddon } from "./load.js";

interface NetnsAddon {
  /** Opens and validates a netns file (nsfs, CLONE_NEWNET); the fd is O_CLOEXEC. */
  netnsOpen(path: string): number;
  netnsClose(fd: number): void;
  /** Inode of the namespace behind path; equal inodes mean the same netns. */
  netnsInode(path: string): number;
  netnsIfNameToIndex(netnsPath: string | null, name: string): Promise<number>;
  /** key is a path below /proc/sys starting with "net/", e.g. "net/ipv4/conf/all/rp_filter". */
  netnsSysctlWrite(netnsPath: string | null, key: string, value: string): Promise<void>;
  netnsSysctlRead(netnsPath: string | null, key: string): Promise<string>;
}

export function netnsAddon(): NetnsAddon {
  return loadAddon() as NetnsAddon;
}
