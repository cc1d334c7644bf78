// NomadClient.events against a local HTTP server standing in for a Nomad client agent whose server
// went away (it takes the request and never answers): the stream fails after the request timeout
// instead of hanging, and an abort ends it at once, before or after the answer's headers.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NomadClient } from "../../src/nomad/client.js";

let server: Server;
let address = "";

beforeAll(async () => {
  server = createServer((req, res) => {
    if (req.url?.includes("silent")) return; // takes the request, never answers
    res.writeHead(200);
    res.write("{}\n"); // headers and one heartbeat, then nothing
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  address = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

async function drain(stream: AsyncGenerator<unknown>): Promise<number> {
  let n = 0;
  for await (const _ of stream) n++;
  return n;
}

describe("NomadClient.events", () => {
  it("fails after the timeout when the agent never answers", async () => {
    const client = new NomadClient({ address, timeoutMs: 300 });
    const t = Date.now();
    await expect(drain(client.events("silent", "*", 0, new AbortController().signal))).rejects.toThrow(
      /event stream: no answer within 300 ms/,
    );
    expect(Date.now() - t).toBeLessThan(3000);
  });

  it("ends at once on abort, before the answer and while the stream is open", async () => {
    const client = new NomadClient({ address, timeoutMs: 10_000 });
    const before = new AbortController();
    const pending = drain(client.events("silent", "*", 0, before.signal));
    setTimeout(() => before.abort(), 100);
    await expect(pending).rejects.toThrow(/event stream/);

    const open = new AbortController();
    const stream = client.events("Service", "*", 0, open.signal);
    expect((await stream.next()).value).toEqual({ index: 0, events: [] }); // the heartbeat
    setTimeout(() => open.abort(), 100);
    const t = Date.now();
    expect((await stream.next()).done).toBe(true);
    expect(Date.now() - t).toBeLessThan(3000);
  });
});
