// `nkit node list|forget|leave`: the other nkit hosts this one routes pods to (static peers and the
// Nomad cluster's nodes, this one included) with their addresses, pod CIDRs and the state of each
// route; freeing a departed node's claim; this node's clean leave of the cluster.
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
        n.self
          ? "(this node)"
          : n.routes
              .map((x) =>
                x.state === "installed" ? `${x.podCidr} via ${x.via}` : `${x.podCidr}: ${x.state}`,
              )
              .join("; "),
        n.source,
      ]),
    ),
  );
  return EXIT.OK;
}

export async function nodeForgetCmd(c: NkitClient, json: boolean, name: string): Promise<number> {
  const r = await c.forgetNode(name);
  if (json) printJson(r);
  else
    process.stdout.write(
      r.released ? `forgot node ${name}: its pod CIDRs are free\n` : `node ${name} held no claim\n`,
    );
  return EXIT.OK;
}

export async function nodeLeaveCmd(c: NkitClient, json: boolean, force: boolean): Promise<number> {
  const r = await c.leaveCluster(force);
  if (json) printJson(r);
  else process.stdout.write(`left the cluster, released ${r.podCidrs.join(", ")}; nkitd stops\n`);
  return EXIT.OK;
}
