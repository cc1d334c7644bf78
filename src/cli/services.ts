// `nkit service add|list|get|delete`: the operator's view of the services nkitd load-balances, from
// every source. `add` builds the same definition a service file holds and lets nkitd validate it,
// so the CLI and the files cannot disagree on what a service is.
import type { NkitClient } from "../api/client.js";
import type * as T from "../api/types.js";
import { parseBackend } from "../services/spec.js";
import { formatHostPort } from "../util/ip.js";
import { EXIT, printJson, table, usageError } from "./output.js";

export interface ServiceAddOptions {
  vip: string[];
  backend?: string[];
  selector?: string[];
  affinity?: string;
  affinityTimeout?: string;
  external?: boolean;
}

const hostPort = formatHostPort;

/** "10.96.0.10:80/tcp", "[fd96::a]:53/udp", "10.96.0.10:80" (tcp), with an optional "->8080" target port. */
export function parseVipFlag(text: string): { vip: string; port: T.ServicePort } {
  const m = /^(.+?)(?:\/(tcp|udp))?(?:->(\d+))?$/.exec(text);
  const body = m?.[1] ?? text;
  let parsed: ReturnType<typeof parseBackend>;
  try {
    parsed = parseBackend(body, "--vip");
  } catch (e) {
    throw usageError(`${(e as Error).message} (e.g. --vip 10.96.0.10:80/tcp)`);
  }
  if (parsed.port === undefined)
    throw usageError(`--vip ${text}: give ADDR:PORT[/tcp|udp], e.g. 10.96.0.10:80/tcp`);
  return {
    vip: parsed.address,
    port: { port: parsed.port, protocol: m?.[2] ?? "tcp", targetPort: m?.[3] ? Number(m[3]) : 0 },
  };
}

export function serviceFromFlags(name: string, o: ServiceAddOptions): T.Service {
  if (o.vip.length === 0) throw usageError("give at least one --vip ADDR:PORT[/PROTO]");
  const vips = o.vip.map(parseVipFlag);
  const vip = vips[0]?.vip ?? "";
  if (vips.some((v) => v.vip !== vip))
    throw usageError("every --vip of one service must name the same address");
  const selector: Record<string, string> = {};
  for (const s of o.selector ?? []) {
    const eq = s.indexOf("=");
    if (eq <= 0) throw usageError(`--selector ${s}: give LABEL=VALUE`);
    selector[s.slice(0, eq)] = s.slice(eq + 1);
  }
  const backends = (o.backend ?? []).map((b) => {
    const p = parseBackend(b, "--backend");
    return { address: p.address, port: p.port ?? 0 };
  });
  const timeout = o.affinityTimeout === undefined ? 0 : Number(o.affinityTimeout);
  if (!Number.isInteger(timeout) || timeout < 0) throw usageError("--affinity-timeout takes whole seconds");
  return {
    name,
    vip,
    ports: vips.map((v) => v.port),
    backends,
    selector,
    affinity: o.affinity ?? "",
    affinityTimeoutSeconds: timeout,
    source: "",
    origin: "",
    frontends: [],
    external: o.external === true,
  };
}

/** The JSON form: what a service file would hold, plus where it came from and what it resolves to. */
function serviceJson(s: T.Service): Record<string, unknown> {
  return {
    name: s.name,
    vip: s.vip,
    ports: s.ports,
    ...(Object.keys(s.selector).length
      ? { selector: s.selector }
      : { backends: s.backends.map((b) => (b.port ? hostPort(b.address, b.port) : b.address)) }),
    affinity: s.affinity,
    affinityTimeoutSeconds: s.affinityTimeoutSeconds,
    ...(s.external ? { external: true } : {}),
    source: s.source,
    origin: s.origin,
    frontends: s.frontends.map((f) => ({
      frontend: `${hostPort(f.vip, f.port)}/${f.protocol}`,
      backends: f.backends.map((b) => hostPort(b.address, b.port)),
      /** Connections sent to each backend since it took its slot. */
      connections: Object.fromEntries(
        f.backends.map((b) => [hostPort(b.address, b.port), Number(b.connections)]),
      ),
      external: f.external,
    })),
  };
}

function serviceRows(services: readonly T.Service[]): string[][] {
  return services.flatMap((s) =>
    s.frontends.map((f) => [
      s.name,
      `${hostPort(f.vip, f.port)}/${f.protocol}`,
      f.backends.map((b) => `${hostPort(b.address, b.port)} (${b.connections})`).join(", ") ||
        "(none: refused)",
      s.affinity,
      s.source,
    ]),
  );
}

const HEADERS = ["NAME", "FRONTEND", "BACKENDS (CONNECTIONS)", "AFFINITY", "SOURCE"];
const out = (s: string) => process.stdout.write(s);

export async function serviceListCmd(c: NkitClient, json: boolean): Promise<number> {
  const r = await c.listServices();
  if (json) printJson(r.services.map(serviceJson));
  else out(table(HEADERS, serviceRows(r.services)));
  return EXIT.OK;
}

export async function serviceGetCmd(c: NkitClient, json: boolean, name: string): Promise<number> {
  const s = await c.getService(name);
  if (json) printJson(serviceJson(s));
  else {
    out(
      `name:     ${s.name}\nsource:   ${s.source}${s.origin ? ` (${s.origin})` : ""}\naffinity: ${s.affinity}\n\n`,
    );
    out(table(HEADERS, serviceRows([s])));
  }
  return EXIT.OK;
}

export async function serviceAddCmd(
  c: NkitClient,
  json: boolean,
  name: string,
  o: ServiceAddOptions,
): Promise<number> {
  const s = await c.addService(serviceFromFlags(name, o));
  if (json) printJson(serviceJson(s));
  else out(table(HEADERS, serviceRows([s])));
  return EXIT.OK;
}

export async function serviceDeleteCmd(c: NkitClient, json: boolean, name: string): Promise<number> {
  const s = await c.deleteService(name);
  if (json) printJson(serviceJson(s));
  else out(`service ${s.name} deleted (was from ${s.source})\n`);
  return EXIT.OK;
}
