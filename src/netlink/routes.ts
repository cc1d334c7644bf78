// IPv4/IPv6 unicast routes: add, replace, delete, list.
import { InvalidArgumentError } from "../errors.js";
import { IpAddress, type IpFamily, IpPrefix } from "../util/ip.js";
import {
  AttrWriter,
  attrU32,
  decodeAttrs,
  decodeRtMsg,
  encodeRtMsg,
  type NlMessage,
  splitPayload,
} from "./codec.js";
import {
  RT_SCOPE_HOST,
  RT_SCOPE_LINK,
  RT_SCOPE_NOWHERE,
  RT_SCOPE_UNIVERSE,
  RT_TABLE_MAIN,
  RT_TABLE_UNSPEC,
  RTA_DST,
  RTA_GATEWAY,
  RTA_METRICS,
  RTA_OIF,
  RTA_PREFSRC,
  RTA_PRIORITY,
  RTA_TABLE,
  RTAX_MTU,
  RTM_DELROUTE,
  RTM_F_CLONED,
  RTM_GETROUTE,
  RTM_NEWROUTE,
  RTN_BLACKHOLE,
  RTN_LOCAL,
  RTN_PROHIBIT,
  RTN_UNICAST,
  RTN_UNREACHABLE,
  RTNH_F_ONLINK,
  RTPROT_BOOT,
} from "./constants.js";
import { createRequest, deleted, isAbsent } from "./failures.js";
import { afOf, familyOfAf } from "./ip.js";
import { type LinkRef, linkLabel, resolveIndex } from "./links.js";
import type { NlRequest, RtnlSocket } from "./socket.js";

export type RouteScope = "universe" | "link" | "host" | "nowhere";
export type RouteType = "unicast" | "local" | "blackhole" | "unreachable" | "prohibit";

export interface RouteSpec {
  /** "10.0.0.0/24", "fd00::/64", a host address, or "default" (then `family` is required). */
  dst: string;
  family?: IpFamily;
  /** Output device. */
  dev?: LinkRef;
  gateway?: string;
  /** The gateway is reachable on dev even though no local prefix covers it. */
  onlink?: boolean;
  /** Default: link for device routes without a gateway, universe otherwise (host for "local"). */
  scope?: RouteScope;
  /** Preferred source address (RTA_PREFSRC). */
  src?: string;
  /** Routing table id; default main (254). */
  table?: number;
  /** Route priority (RTA_PRIORITY, "metric" in iproute2). */
  metric?: number;
  /** Path MTU metric (RTAX_MTU). */
  mtu?: number;
  /** RTPROT_* value; default boot (3), like iproute2. */
  protocol?: number;
  type?: RouteType;
}

export interface Route {
  family: IpFamily;
  /** "10.0.0.0/24" or "default". */
  dst: string;
  dstLength: number;
  table: number;
  protocol: number;
  scope: number;
  type: number;
  flags: number;
  onlink: boolean;
  oif: number | undefined;
  gateway: string | undefined;
  src: string | undefined;
  metric: number | undefined;
  mtu: number | undefined;
}

const SCOPES: Record<RouteScope, number> = {
  universe: RT_SCOPE_UNIVERSE,
  link: RT_SCOPE_LINK,
  host: RT_SCOPE_HOST,
  nowhere: RT_SCOPE_NOWHERE,
};
const TYPES: Record<RouteType, number> = {
  unicast: RTN_UNICAST,
  local: RTN_LOCAL,
  blackhole: RTN_BLACKHOLE,
  unreachable: RTN_UNREACHABLE,
  prohibit: RTN_PROHIBIT,
};

function parseDst(spec: RouteSpec): IpPrefix {
  if (spec.dst === "default") {
    if (spec.family === undefined) throw new InvalidArgumentError('route dst "default" needs family 4 or 6');
    return IpPrefix.of(IpAddress.fromValue(spec.family, 0n), 0);
  }
  const p = IpPrefix.parseLoose(spec.dst, "route destination");
  if (spec.family !== undefined && spec.family !== p.family) {
    throw new InvalidArgumentError(`route destination ${spec.dst} is not IPv${spec.family}`);
  }
  return p;
}

function describe(spec: RouteSpec): string {
  const parts = [spec.dst];
  if (spec.gateway) parts.push(`via ${spec.gateway}`);
  if (spec.dev !== undefined) parts.push(`dev ${linkLabel(spec.dev)}`);
  if (spec.onlink) parts.push("onlink");
  if (spec.table !== undefined) parts.push(`table ${spec.table}`);
  return parts.join(" ");
}

/** RTM_NEWROUTE/DELROUTE body; exported for byte-level tests. */
export function buildRoute(spec: RouteSpec, oif: number | undefined, forDelete = false): Uint8Array[] {
  const dst = parseDst(spec);
  const gw = spec.gateway === undefined ? undefined : IpAddress.parse(spec.gateway, "gateway");
  const src = spec.src === undefined ? undefined : IpAddress.parse(spec.src, "source");
  for (const [p, what] of [
    [gw, "gateway"],
    [src, "source"],
  ] as const) {
    if (p && p.family !== dst.family)
      throw new InvalidArgumentError(`route ${spec.dst}: ${what} is not IPv${dst.family}`);
  }
  const type = TYPES[spec.type ?? "unicast"];
  if (type === undefined) throw new InvalidArgumentError(`unknown route type ${String(spec.type)}`);
  let scope: number;
  if (spec.scope !== undefined) {
    const s = SCOPES[spec.scope];
    if (s === undefined) throw new InvalidArgumentError(`unknown route scope ${String(spec.scope)}`);
    scope = s;
  } else if (type === RTN_LOCAL) scope = RT_SCOPE_HOST;
  else if (type === RTN_UNICAST && !gw && oif !== undefined) scope = RT_SCOPE_LINK;
  else scope = RT_SCOPE_UNIVERSE;
  const table = spec.table ?? RT_TABLE_MAIN;
  const w = new AttrWriter().raw(
    encodeRtMsg({
      family: afOf(dst.family),
      dstLength: dst.prefixLength,
      // Tables above 255 only fit in RTA_TABLE; the header then says "see attribute".
      table: table < 256 ? table : RT_TABLE_UNSPEC,
      protocol: forDelete ? 0 : (spec.protocol ?? RTPROT_BOOT),
      scope: forDelete ? RT_SCOPE_NOWHERE : scope,
      type,
      flags: spec.onlink ? RTNH_F_ONLINK : 0,
    }),
  );
  w.u32(RTA_TABLE, table);
  if (dst.prefixLength > 0) w.bytes(RTA_DST, dst.address.toBytes());
  if (oif !== undefined) w.u32(RTA_OIF, oif);
  if (gw) w.bytes(RTA_GATEWAY, gw.toBytes());
  if (src) w.bytes(RTA_PREFSRC, src.toBytes());
  if (spec.metric !== undefined) w.u32(RTA_PRIORITY, spec.metric);
  if (spec.mtu !== undefined && !forDelete) {
    const mtu = spec.mtu;
    w.nest(RTA_METRICS, (m) => {
      m.u32(RTAX_MTU, mtu);
    });
  }
  return w.toParts();
}

async function send(sock: RtnlSocket, spec: RouteSpec, replace: boolean): Promise<void> {
  buildRoute(spec, undefined);
  const oif = spec.dev === undefined ? undefined : await resolveIndex(sock, spec.dev);
  await sock.send(routeRequest(spec, oif, replace));
}

/** The request addRoute/replaceRoute send, with the device already resolved to `oif` (batches). */
export function routeRequest(spec: RouteSpec, oif: number | undefined, replace: boolean): NlRequest {
  return createRequest(
    RTM_NEWROUTE,
    buildRoute(spec, oif),
    `route ${describe(spec)}`,
    replace,
    "a route to that destination exists already; use replaceRoute to change it",
  );
}

export const addRoute = (sock: RtnlSocket, spec: RouteSpec): Promise<void> => send(sock, spec, false);

/** Creates the route or replaces the one with the same destination, table, tos and metric. */
export const replaceRoute = (sock: RtnlSocket, spec: RouteSpec): Promise<void> => send(sock, spec, true);

/** Deletes a route; false when no such route existed. */
export async function deleteRoute(sock: RtnlSocket, spec: RouteSpec): Promise<boolean> {
  buildRoute(spec, undefined, true);
  const oif = spec.dev === undefined ? undefined : await resolveIndex(sock, spec.dev);
  const op = `delete route ${describe(spec)}`;
  return deleted(sock.request(RTM_DELROUTE, 0, buildRoute(spec, oif, true), op), "ESRCH", "ENOENT");
}

/** A delete of a route that may be gone already (batches): its absence counts as done. */
export function deleteRouteRequest(spec: RouteSpec, oif: number | undefined): NlRequest {
  return {
    type: RTM_DELROUTE,
    flags: 0,
    body: buildRoute(spec, oif, true),
    operation: `delete route ${describe(spec)}`,
    fail: (e) => (isAbsent(e, "ESRCH", "ENOENT") ? undefined : e),
  };
}

function parseRoute(m: NlMessage): Route | undefined {
  const [hdr, a] = splitPayload(m.payload, 12, "route");
  const h = decodeRtMsg(hdr);
  const family = familyOfAf(h.family);
  if (!family) return undefined;
  const dst = a.get(RTA_DST);
  const gw = a.get(RTA_GATEWAY);
  const src = a.get(RTA_PREFSRC);
  const metrics = a.get(RTA_METRICS);
  return {
    family,
    dst:
      h.dstLength === 0
        ? "default"
        : IpPrefix.of(dst ? IpAddress.fromBytes(dst) : IpAddress.fromValue(family, 0n), h.dstLength).text,
    dstLength: h.dstLength,
    table: attrU32(a, RTA_TABLE) ?? h.table,
    protocol: h.protocol,
    scope: h.scope,
    type: h.type,
    flags: h.flags,
    onlink: (h.flags & RTNH_F_ONLINK) !== 0,
    oif: attrU32(a, RTA_OIF),
    gateway: gw ? IpAddress.fromBytes(gw).text : undefined,
    src: src ? IpAddress.fromBytes(src).text : undefined,
    metric: attrU32(a, RTA_PRIORITY),
    mtu: metrics ? attrU32(decodeAttrs(metrics), RTAX_MTU) : undefined,
  };
}

export interface RouteFilter {
  family?: IpFamily;
  /** Default main; "all" lists every table (including local). */
  table?: number | "all";
  dev?: LinkRef;
}

export async function listRoutes(sock: RtnlSocket, filter: RouteFilter = {}): Promise<Route[]> {
  const oif = filter.dev === undefined ? undefined : await resolveIndex(sock, filter.dev);
  const table = filter.table ?? RT_TABLE_MAIN;
  const families: IpFamily[] = filter.family ? [filter.family] : [4, 6];
  const out: Route[] = [];
  for (const family of families) {
    const w = new AttrWriter().raw(encodeRtMsg({ family: afOf(family) }));
    // Strict checking lets the kernel filter by table and device; we filter again for older kernels.
    if (table !== "all") w.u32(RTA_TABLE, table);
    if (oif !== undefined) w.u32(RTA_OIF, oif);
    let msgs: NlMessage[];
    try {
      msgs = await sock.dump(RTM_GETROUTE, w.toParts(), `list IPv${family} routes`);
    } catch (e) {
      // A filtered dump of a table that was never created fails instead of returning nothing.
      if (table !== "all" && isAbsent(e, "ENOENT")) continue;
      throw e;
    }
    for (const m of msgs) {
      if (m.type !== RTM_NEWROUTE) continue;
      const r = parseRoute(m);
      if (!r || r.flags & RTM_F_CLONED) continue;
      if (table !== "all" && r.table !== table) continue;
      if (oif !== undefined && r.oif !== oif) continue;
      out.push(r);
    }
  }
  return out;
}
