// Reaching allocations and VIPs the way the Nomad lane's tests do: a one-line node client run in
// nkitd's socket-LB cgroup (a host process, optionally inside an allocation's netns) or only in a
// netns ("another host", no socket hooks), plain fetch from the test process, and waiting on a
// condition with the agent's log tail in the error.
import { inCgroup } from "../helpers/cgroup.js";
import { run } from "../helpers/sys.js";
import type { NomadAgent } from "./env.js";

const GET = `const [h, p, path] = process.argv.slice(1);
fetch("http://" + (h.includes(":") ? "[" + h + "]" : h) + ":" + p + (path || "/"), { signal: AbortSignal.timeout(5000) })
  .then((r) => r.text()).then((t) => process.stdout.write(t), (e) => { process.stdout.write("error:" + (e.cause?.code ?? e.message)); });`;

/** GET http://host:port/path from a process in `cgroup` (and `netns`), or only in `netns`; "error:<code>" on failure. */
export async function getFrom(
  where: { cgroup?: string; netns?: string },
  host: string,
  port: number,
  path = "/",
): Promise<string> {
  const args = ["-e", GET, host, String(port), path];
  const r = where.cgroup
    ? await inCgroup(where.cgroup, where.netns, process.execPath, args)
    : await run("nsenter", [`--net=${where.netns}`, "--", process.execPath, ...args]);
  return r.stdout;
}

export async function httpGet(address: string, port: number): Promise<string> {
  const host = address.includes(":") ? `[${address}]` : address;
  const res = await fetch(`http://${host}:${port}/`, { signal: AbortSignal.timeout(5_000) });
  return res.text();
}

/** Polls fn until it returns a value (errors count as not yet); the agent's log tail on timeout. */
export async function until<T>(
  nomad: NomadAgent,
  what: string,
  fn: () => Promise<T | undefined>,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${nomad.logTail(20)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
