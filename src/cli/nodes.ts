// `nkit node list`: the other nkit hosts this one routes pods to (static peers), their addresses,
// pod CIDRs and the state of each route.
import type { NkitClient } from "../api/client.js";
import { EXIT, printJson, table } from "./output.js";

export async function nodeListCmd(c: NkitClient, json: boolean): Promise<number> {
  const r = await c.listNodes();
  if (json) {
    printJson(r.nodes);
    return EXIT.OK;
  }
  process.stdout.write(
    table(
      ["NAME", "ADDRESSES", "POD CIDRS", "ROUTES", "SOURCE"],
      r.nodes.map((n) => [
        n.name,
        n.addresses.join(","),
        n.podCidrs.join(","),
        n.routes
          .map((x) => (x.state === "installed" ? `${x.podCidr} via ${x.via}` : `${x.podCidr}: ${x.state}`))
          .join("; "),
        n.source,
      ]),
    ),
  );
  return EXIT.OK;
}
