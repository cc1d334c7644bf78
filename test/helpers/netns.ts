// Throwaway network namespaces for tests, removed by the owning Scope, and the scoped handles on the
// host's own netns (rtnetlink socket, interface names) the netlink tests share.

import { Rtnl } from "../../src/netlink/index.js";
import { uniqueIfName, uniqueNetnsName } from "./names.js";
import type { Scope } from "./scope.js";
import { run } from "./sys.js";

export interface TestNetns {
  name: string;
  path: string;
}

export async function createNetns(scope: Scope, label?: string): Promise<TestNetns> {
  const name = uniqueNetnsName(label);
  await run("ip", ["netns", "add", name]);
  scope.defer(() => run("ip", ["netns", "del", name]));
  await run("ip", ["-n", name, "link", "set", "lo", "up"]);
  return { name, path: `/run/netns/${name}` };
}

/** rtnetlink in our own (the host's) netns, closed by the scope. */
export async function hostRtnl(scope: Scope): Promise<Rtnl> {
  const host = await Rtnl.host();
  scope.defer(() => host.close());
  return host;
}

/** A unique interface name; the scope deletes the device by that name in our netns if it is there. */
export function scopedIfName(scope: Scope, prefix: string): string {
  const name = uniqueIfName(prefix);
  scope.defer(() => run("ip", ["link", "del", name]).catch(() => undefined));
  return name;
}

/** A veth pair with one end (`name`) in netns `a` and the other (`peer`) in netns `b` (names, not paths). */
export async function vethBetween(name: string, a: string, peer: string, b: string): Promise<void> {
  await run("ip", ["link", "add", name, "netns", a, "type", "veth", "peer", "name", peer, "netns", b]);
}
