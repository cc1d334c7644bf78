// Adoption after a (re)start: the endpoint records a previous process left are brought in line with
// the kernel. Wired endpoints whose device still exists keep forwarding (their links get the new
// programs, their map entries are restored); half-built or orphaned ones are torn down, and pins
// nobody records are removed.
import { NkitError } from "../errors.js";
import { netnsExists } from "../netlink/index.js";
import type { DatapathContext } from "./context.js";
import { podMac } from "./devices.js";
import { endpointKeys, endpointValueOf, sweepEndpointEntries } from "./endpoint-maps.js";
import { adoptEndpointLinks } from "./links.js";
import type { EndpointRecord, EndpointStore } from "./store.js";

export async function reconcile(
  dp: DatapathContext,
  store: EndpointStore,
  teardown: (rec: EndpointRecord) => Promise<void>,
): Promise<void> {
  const epDir = dp.pins.sub("endpoints");
  const recorded = new Set<string>();
  for (const rec of store.list()) {
    recorded.add(rec.hostIfName);
    const link = rec.hostIfindex ? await dp.host.getLink(rec.hostIfName) : undefined;
    // A wired endpoint without its device whose pod netns lives on is the manager's to wire again.
    if (rec.phase === "wired" && (!link || link.index !== rec.hostIfindex) && netnsExists(rec.netnsPath))
      continue;
    if (rec.phase !== "wired" || !link || link.index !== rec.hostIfindex) {
      // Half-built, or the pod's netns (and with it the pair) is gone.
      dp.log?.info({ id: rec.id, dev: rec.hostIfName, phase: rec.phase }, "removing stale endpoint");
      await teardown(rec);
      continue;
    }
    if (rec.mode !== dp.mode) {
      throw new NkitError(
        "NKIT_INVALID_ARGUMENT",
        `endpoint ${rec.id} was wired in ${rec.mode} mode but the datapath now runs in ${dp.mode} mode; ` +
          `set datapath: ${rec.mode} or unwire the existing endpoints first`,
      );
    }
    await adoptEndpointLinks(dp, rec.hostIfName, rec.hostIfindex);
    // Maps are pinned, but restore entries in case they were cleared by hand.
    const value = endpointValueOf({ ...rec, podMac: await podMac(rec), hostMac: link.mac });
    dp.progs.devices.update(rec.hostIfindex, rec.epNum);
    for (const k of endpointKeys(rec.addresses)) dp.progs.endpoints.update(k, value);
  }
  const swept = sweepEndpointEntries(dp.progs, store.peek());
  if (swept > 0) dp.log?.warn({ entries: swept }, "removed datapath map entries no endpoint accounts for");
  // Pins of endpoints nobody records any more.
  for (const name of epDir.exists() ? epDir.list() : []) {
    if (!recorded.has(name)) epDir.remove(name);
  }
}
