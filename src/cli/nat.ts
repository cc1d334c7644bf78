// `nkit nat list`: the flows masquerade translated (pod address:port → the uplink's address:port the
// world sees), read from the datapath's conntrack by nkitd.
import type { NkitClient } from "../api/client.js";
import { EXIT, printJson, table } from "./output.js";

export async function natListCmd(c: NkitClient, json: boolean): Promise<number> {
  const r = await c.listNat();
  if (json) {
    printJson(r.flows);
    return EXIT.OK;
  }
  if (!r.enabled) process.stderr.write("masquerade is off: it did not start (see nkitd's log)\n");
  process.stdout.write(
    table(
      ["PROTO", "POD", "TRANSLATED", "REMOTE", "IDLE"],
      r.flows.map((f) => [f.protocol, f.pod, f.translated, f.remote, `${Math.round(f.idleSeconds)}s`]),
    ),
  );
  return EXIT.OK;
}
