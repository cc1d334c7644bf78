// Throwaway network namespaces for tests, removed by the owning Scope.

import { uniqueNetnsName } from "./names.js";
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
