// Links: netkit and veth pairs, updates (up/down, MTU, GSO/GRO sizes, rename, netns moves), lookups
// and dumps, all through one RtnlSocket (so they act in that socket's netns).
import { InvalidArgumentError, NetlinkError, NotFoundError, NotSupportedError } from "../errors.js";
import { formatMac, parseMac } from "../util/ip.js";
import {
  AttrWriter,
  attrS32,
  attrString,
  attrU8,
  attrU16,
  attrU32,
  decodeAttrs,
  decodeIfInfoMsg,
  encodeIfInfoMsg,
  type NlMessage,
  splitPayload,
} from "./codec.js";
import {
  AF_UNSPEC,
  IFF_LOWER_UP,
  IFF_UP,
  IFLA_ADDRESS,
  IFLA_EXT_MASK,
  IFLA_GRO_IPV4_MAX_SIZE,
  IFLA_GRO_MAX_SIZE,
  IFLA_GSO_IPV4_MAX_SIZE,
  IFLA_GSO_MAX_SEGS,
  IFLA_GSO_MAX_SIZE,
  IFLA_IFNAME,
  IFLA_INFO_DATA,
  IFLA_INFO_KIND,
  IFLA_LINK,
  IFLA_LINK_NETNSID,
  IFLA_LINKINFO,
  IFLA_MASTER,
  IFLA_MAX_MTU,
  IFLA_MIN_MTU,
  IFLA_MTU,
  IFLA_NET_NS_FD,
  IFLA_NETKIT_HEADROOM,
  IFLA_NETKIT_MODE,
  IFLA_NETKIT_PEER_INFO,
  IFLA_NETKIT_PEER_POLICY,
  IFLA_NETKIT_PEER_SCRUB,
  IFLA_NETKIT_POLICY,
  IFLA_NETKIT_PRIMARY,
  IFLA_NETKIT_SCRUB,
  IFLA_NETKIT_TAILROOM,
  IFLA_NUM_RX_QUEUES,
  IFLA_NUM_TX_QUEUES,
  IFLA_OPERSTATE,
  IFLA_TSO_MAX_SEGS,
  IFLA_TSO_MAX_SIZE,
  IFLA_TXQLEN,
  NETKIT_DROP,
  NETKIT_L2,
  NETKIT_L3,
  NETKIT_PASS,
  NETKIT_SCRUB_DEFAULT,
  NETKIT_SCRUB_NONE,
  NLM_F_CREATE,
  NLM_F_ECHO,
  NLM_F_EXCL,
  RTEXT_FILTER_SKIP_STATS,
  RTM_DELLINK,
  RTM_GETLINK,
  RTM_NEWLINK,
  VETH_INFO_PEER,
} from "./constants.js";
import { alreadyExists, deleted, isAbsent } from "./failures.js";
import { withOptionalNetnsFd } from "./netns.js";
import type { NlRequest, RtnlSocket } from "./socket.js";

/** An interface by index or by name. */
export type LinkRef = number | string;

export type NetkitMode = "l2" | "l3";
/** Default verdict when no program is attached. "forward"/"blackhole" are iproute2's spellings. */
export type NetkitPolicy = "pass" | "drop";
export type NetkitPolicyInput = NetkitPolicy | "forward" | "blackhole";
export type NetkitScrub = "default" | "none";

export interface NetkitInfo {
  /** True on the host-side (primary) device, false on the peer. */
  primary: boolean | undefined;
  mode: NetkitMode | undefined;
  policy: NetkitPolicy | undefined;
  peerPolicy: NetkitPolicy | undefined;
  /** Present on kernels >= 6.13 only. */
  scrub: NetkitScrub | undefined;
  peerScrub: NetkitScrub | undefined;
  headroom: number | undefined;
  tailroom: number | undefined;
}

export interface Link {
  index: number;
  name: string;
  /** IFLA_INFO_KIND ("veth", "netkit", ...); undefined for devices without one (lo, physical NICs). */
  kind: string | undefined;
  flags: number;
  up: boolean;
  lowerUp: boolean;
  operState: number | undefined;
  mtu: number | undefined;
  minMtu: number | undefined;
  maxMtu: number | undefined;
  mac: string | undefined;
  txqlen: number | undefined;
  master: number | undefined;
  gsoMaxSize: number | undefined;
  gsoMaxSegs: number | undefined;
  groMaxSize: number | undefined;
  gsoIpv4MaxSize: number | undefined;
  groIpv4MaxSize: number | undefined;
  tsoMaxSize: number | undefined;
  tsoMaxSegs: number | undefined;
  /** IFLA_LINK: for veth/netkit, the peer's ifindex (in the peer's netns). */
  peerIndex: number | undefined;
  /** IFLA_LINK_NETNSID: id (in this netns) of the netns holding the peer, when it is elsewhere. */
  linkNetnsId: number | undefined;
  netkit: NetkitInfo | undefined;
}

/** Device limits and current settings relevant to BIG TCP. */
export interface BigTcpLimits {
  /** Largest GSO packet the device accepts; BIG TCP needs more than 65536. */
  tsoMaxSize: number | undefined;
  tsoMaxSegs: number | undefined;
  gsoMaxSize: number | undefined;
  groMaxSize: number | undefined;
  gsoIpv4MaxSize: number | undefined;
  groIpv4MaxSize: number | undefined;
}

export interface OffloadSizes {
  gsoMaxSize?: number;
  groMaxSize?: number;
  gsoIpv4MaxSize?: number;
  groIpv4MaxSize?: number;
}

/** Changes applied to an existing link in one request. */
export interface LinkUpdate extends OffloadSizes {
  up?: boolean;
  mtu?: number;
  /** New name (in the target netns when netnsPath is given too). */
  name?: string;
  mac?: string;
  txqlen?: number;
  /** Move the link into this network namespace. */
  netnsPath?: string;
}

interface PairOptions {
  /** Host-side (primary) name. */
  name: string;
  peerName: string;
  /** Create the peer directly inside this netns (e.g. /run/netns/pod1). */
  peerNetnsPath?: string;
  /** MTU of both ends unless peerMtu is given. */
  mtu?: number;
  peerMtu?: number;
  mac?: string;
  peerMac?: string;
  /** Transmit and receive queues of each end (veth's default: one per possible CPU). */
  queues?: number;
}

export type VethOptions = PairOptions;

export interface NetkitOptions extends PairOptions {
  /** Default "l3" (no ARP, no MAC); immutable after creation. */
  mode?: NetkitMode;
  /** Primary's verdict without programs (kernel default "pass"). */
  policy?: NetkitPolicyInput;
  /** Peer's verdict without programs; "drop" keeps a pod silent until its programs are attached. */
  peerPolicy?: NetkitPolicyInput;
  /** Only sent when given: kernels before 6.13 ignore these. */
  scrub?: NetkitScrub;
  peerScrub?: NetkitScrub;
  /** Only sent when given (6.14+). */
  headroom?: number;
  tailroom?: number;
}

const MAX_IFNAME = 15;

function checkName(name: string, what: string): void {
  if (
    name.length === 0 ||
    Buffer.byteLength(name) > MAX_IFNAME ||
    /[\s/:]/.test(name) ||
    name === "." ||
    name === ".."
  ) {
    throw new InvalidArgumentError(
      `${what} ${JSON.stringify(name)} must be 1..15 bytes without spaces, '/' or ':'`,
    );
  }
}

function checkU32(v: number, what: string, min = 0): void {
  if (!Number.isInteger(v) || v < min || v > 0xffffffff) {
    throw new InvalidArgumentError(`${what} must be an integer >= ${min}, got ${v}`);
  }
}

export const linkLabel = (ref: LinkRef): string => (typeof ref === "number" ? `#${ref}` : ref);

/** ifinfomsg + attrs selecting a link by index, or by IFLA_IFNAME when given a name. */
function selectLink(ref: LinkRef, header: { flags?: number; change?: number } = {}): AttrWriter {
  const w = new AttrWriter();
  if (typeof ref === "number") {
    checkU32(ref, "ifindex", 1);
    w.raw(encodeIfInfoMsg({ family: AF_UNSPEC, index: ref, ...header }));
  } else {
    checkName(ref, "interface name");
    w.raw(encodeIfInfoMsg({ family: AF_UNSPEC, ...header }));
    w.string(IFLA_IFNAME, ref);
  }
  return w;
}

const policyValue = (p: NetkitPolicyInput): number => {
  switch (p) {
    case "pass":
    case "forward":
      return NETKIT_PASS;
    case "drop":
    case "blackhole":
      return NETKIT_DROP;
    default:
      throw new InvalidArgumentError(`netkit policy must be pass|forward|drop|blackhole, got ${String(p)}`);
  }
};

const scrubValue = (s: NetkitScrub): number => {
  if (s === "default") return NETKIT_SCRUB_DEFAULT;
  if (s === "none") return NETKIT_SCRUB_NONE;
  throw new InvalidArgumentError(`netkit scrub must be default|none, got ${String(s)}`);
};

function checkPair(o: PairOptions): void {
  checkName(o.name, "interface name");
  checkName(o.peerName, "peer name");
  if (o.mtu !== undefined) checkU32(o.mtu, "mtu", 1);
  if (o.peerMtu !== undefined) checkU32(o.peerMtu, "peer mtu", 1);
  if (o.queues !== undefined) checkU32(o.queues, "queues", 1);
}

function queueAttrs(w: AttrWriter, queues: number | undefined): void {
  if (queues === undefined) return;
  w.u32(IFLA_NUM_TX_QUEUES, queues);
  w.u32(IFLA_NUM_RX_QUEUES, queues);
}

/** The peer block shared by veth (VETH_INFO_PEER) and netkit (IFLA_NETKIT_PEER_INFO): a struct
 * ifinfomsg followed by the peer's own IFLA_* attributes. */
function peerBlock(o: PairOptions, peerNetnsFd: number | undefined): (w: AttrWriter) => void {
  return (w) => {
    w.raw(encodeIfInfoMsg({ family: AF_UNSPEC }));
    w.string(IFLA_IFNAME, o.peerName);
    const mtu = o.peerMtu ?? o.mtu;
    if (mtu !== undefined) w.u32(IFLA_MTU, mtu);
    if (o.peerMac !== undefined) w.bytes(IFLA_ADDRESS, parseMac(o.peerMac, "peer MAC"));
    queueAttrs(w, o.queues);
    if (peerNetnsFd !== undefined) w.u32(IFLA_NET_NS_FD, peerNetnsFd);
  };
}

function pairHead(o: PairOptions): AttrWriter {
  const w = new AttrWriter();
  w.raw(encodeIfInfoMsg({ family: AF_UNSPEC }));
  w.string(IFLA_IFNAME, o.name);
  if (o.mtu !== undefined) w.u32(IFLA_MTU, o.mtu);
  if (o.mac !== undefined) w.bytes(IFLA_ADDRESS, parseMac(o.mac));
  queueAttrs(w, o.queues);
  return w;
}

const pairLabel = (kind: string, o: PairOptions): string =>
  `create ${kind} ${o.name} (peer ${o.peerName}${o.peerNetnsPath ? ` in ${o.peerNetnsPath}` : ""})`;

/** RTM_NEWLINK body creating a veth pair; exported for byte-level tests. */
export function buildVethCreate(o: VethOptions, peerNetnsFd: number | undefined): Uint8Array[] {
  checkPair(o);
  const w = pairHead(o);
  w.nest(IFLA_LINKINFO, (li) => {
    li.string(IFLA_INFO_KIND, "veth");
    li.nest(IFLA_INFO_DATA, (data) => {
      data.nest(VETH_INFO_PEER, peerBlock(o, peerNetnsFd), false);
    });
  });
  return w.toParts();
}

/** RTM_NEWLINK body creating a netkit pair; exported for byte-level tests. */
export function buildNetkitCreate(o: NetkitOptions, peerNetnsFd: number | undefined): Uint8Array[] {
  checkPair(o);
  const mode = o.mode ?? "l3";
  if (mode !== "l2" && mode !== "l3")
    throw new InvalidArgumentError(`netkit mode must be l2 or l3, got ${String(mode)}`);
  if (mode === "l3" && (o.mac !== undefined || o.peerMac !== undefined)) {
    throw new InvalidArgumentError("netkit in l3 mode has no MAC address: drop mac/peerMac or use mode l2");
  }
  for (const [v, what] of [
    [o.headroom, "headroom"],
    [o.tailroom, "tailroom"],
  ] as const) {
    if (v !== undefined && (!Number.isInteger(v) || v < 0 || v > 0xffff)) {
      throw new InvalidArgumentError(`netkit ${what} must be 0..65535, got ${v}`);
    }
  }
  const w = pairHead(o);
  w.nest(IFLA_LINKINFO, (li) => {
    li.string(IFLA_INFO_KIND, "netkit");
    li.nest(IFLA_INFO_DATA, (data) => {
      data.nest(IFLA_NETKIT_PEER_INFO, peerBlock(o, peerNetnsFd), false);
      data.u32(IFLA_NETKIT_MODE, mode === "l2" ? NETKIT_L2 : NETKIT_L3);
      if (o.policy !== undefined) data.u32(IFLA_NETKIT_POLICY, policyValue(o.policy));
      if (o.peerPolicy !== undefined) data.u32(IFLA_NETKIT_PEER_POLICY, policyValue(o.peerPolicy));
      if (o.scrub !== undefined) data.u32(IFLA_NETKIT_SCRUB, scrubValue(o.scrub));
      if (o.peerScrub !== undefined) data.u32(IFLA_NETKIT_PEER_SCRUB, scrubValue(o.peerScrub));
      if (o.headroom !== undefined) data.u16(IFLA_NETKIT_HEADROOM, o.headroom);
      if (o.tailroom !== undefined) data.u16(IFLA_NETKIT_TAILROOM, o.tailroom);
    });
  });
  return w.toParts();
}

const nameHint = (o: PairOptions): string =>
  `an interface named ${o.name} or ${o.peerName}${o.peerNetnsPath ? ` (in ${o.peerNetnsPath})` : ""} already exists; delete it or pick another name`;

export async function createVeth(sock: RtnlSocket, o: VethOptions): Promise<Link> {
  const body = buildVethCreate(o, o.peerNetnsPath === undefined ? undefined : 0);
  const echoed = await withOptionalNetnsFd(o.peerNetnsPath, async (fd) => {
    const real = fd === undefined ? body : buildVethCreate(o, fd);
    try {
      return await sock.request(
        RTM_NEWLINK,
        NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO,
        real,
        pairLabel("veth", o),
      );
    } catch (e) {
      throw alreadyExists(e, nameHint(o));
    }
  });
  return createdLink(sock, o.name, echoed);
}

export async function createNetkit(sock: RtnlSocket, o: NetkitOptions): Promise<Link> {
  // Validate (and fail on bad options) before opening anything.
  buildNetkitCreate(o, o.peerNetnsPath === undefined ? undefined : 0);
  const echoed = await withOptionalNetnsFd(o.peerNetnsPath, async (fd) => {
    try {
      return await sock.request(
        RTM_NEWLINK,
        NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO,
        buildNetkitCreate(o, fd),
        pairLabel("netkit", o),
      );
    } catch (e) {
      // The kernel answers an unknown kind with EOPNOTSUPP and "Unknown device type".
      if (
        e instanceof NetlinkError &&
        e.errnoCode === "EOPNOTSUPP" &&
        (!e.extack || /unknown device type/i.test(e.extack))
      ) {
        throw new NotSupportedError("netkit devices", "Linux >= 6.7 built with CONFIG_NETKIT=y", {
          cause: e,
        });
      }
      throw alreadyExists(e, nameHint(o));
    }
  });
  return createdLink(sock, o.name, echoed);
}

/** The link a create made: from the kernel's echo (Linux >= 6.3), else asked for. */
function createdLink(sock: RtnlSocket, name: string, echoed: readonly NlMessage[]): Promise<Link> {
  for (const m of echoed) {
    if (m.type !== RTM_NEWLINK) continue;
    const link = parseLink(m);
    if (link.name === name) return Promise.resolve(link);
  }
  return requireLink(sock, name);
}

function describeUpdate(u: LinkUpdate): string {
  const parts: string[] = [];
  if (u.netnsPath !== undefined) parts.push(`move to ${u.netnsPath}`);
  if (u.name !== undefined) parts.push(`rename to ${u.name}`);
  if (u.mtu !== undefined) parts.push(`mtu ${u.mtu}`);
  if (u.mac !== undefined) parts.push(`mac ${u.mac}`);
  if (u.txqlen !== undefined) parts.push(`txqlen ${u.txqlen}`);
  for (const k of ["gsoMaxSize", "groMaxSize", "gsoIpv4MaxSize", "groIpv4MaxSize"] as const) {
    if (u[k] !== undefined) parts.push(`${k} ${u[k]}`);
  }
  if (u.up !== undefined) parts.push(u.up ? "up" : "down");
  return parts.join(", ");
}

function buildUpdate(ref: LinkRef, u: LinkUpdate, netnsFd: number | undefined): Uint8Array[] {
  const header = u.up === undefined ? {} : { flags: u.up ? IFF_UP : 0, change: IFF_UP };
  const w = selectLink(ref, header);
  if (u.name !== undefined) {
    checkName(u.name, "new name");
    w.string(IFLA_IFNAME, u.name);
  }
  if (u.mtu !== undefined) {
    checkU32(u.mtu, "mtu", 1);
    w.u32(IFLA_MTU, u.mtu);
  }
  if (u.mac !== undefined) w.bytes(IFLA_ADDRESS, parseMac(u.mac));
  if (u.txqlen !== undefined) {
    checkU32(u.txqlen, "txqlen");
    w.u32(IFLA_TXQLEN, u.txqlen);
  }
  const sizes: [number | undefined, number, string][] = [
    [u.gsoMaxSize, IFLA_GSO_MAX_SIZE, "gsoMaxSize"],
    [u.groMaxSize, IFLA_GRO_MAX_SIZE, "groMaxSize"],
    [u.gsoIpv4MaxSize, IFLA_GSO_IPV4_MAX_SIZE, "gsoIpv4MaxSize"],
    [u.groIpv4MaxSize, IFLA_GRO_IPV4_MAX_SIZE, "groIpv4MaxSize"],
  ];
  for (const [v, attr, what] of sizes) {
    if (v === undefined) continue;
    checkU32(v, what, 1);
    w.u32(attr, v);
  }
  if (netnsFd !== undefined) w.u32(IFLA_NET_NS_FD, netnsFd);
  return w.toParts();
}

/** Applies several changes to one link in a single request. */
export async function updateLink(sock: RtnlSocket, ref: LinkRef, u: LinkUpdate): Promise<void> {
  // The new name goes in IFLA_IFNAME, so renames must address the link by index.
  let target = ref;
  if (typeof ref === "string" && u.name !== undefined) target = (await requireLink(sock, ref)).index;
  buildUpdate(target, u, undefined);
  await withOptionalNetnsFd(u.netnsPath, async (fd) => {
    await sock.send(updateLinkRequest(target, u, fd, ref, sock.where));
  });
}

/**
 * The request updateLink sends (batches: no rename by name, no move). `label` names the link in
 * errors when `target` is its index; `where` says which netns.
 */
export function updateLinkRequest(
  target: LinkRef,
  u: LinkUpdate,
  netnsFd: number | undefined,
  label: LinkRef = target,
  where = "",
): NlRequest {
  const operation = `set link ${linkLabel(label)}: ${describeUpdate(u)}`;
  return {
    type: RTM_NEWLINK,
    flags: 0,
    body: buildUpdate(target, u, netnsFd),
    operation,
    fail: (e) => {
      if (isAbsent(e, "ENODEV"))
        return new NotFoundError(`${operation}${where}: no such interface`, { cause: e });
      return alreadyExists(
        e,
        `an interface named ${u.name ?? linkLabel(label)} already exists in the target netns`,
      );
    },
  };
}

export const setLinkUp = (sock: RtnlSocket, ref: LinkRef, up = true): Promise<void> =>
  updateLink(sock, ref, { up });
export const setMtu = (sock: RtnlSocket, ref: LinkRef, mtu: number): Promise<void> =>
  updateLink(sock, ref, { mtu });
export const renameLink = (sock: RtnlSocket, ref: LinkRef, name: string): Promise<void> =>
  updateLink(sock, ref, { name });
export const setOffloadSizes = (sock: RtnlSocket, ref: LinkRef, sizes: OffloadSizes): Promise<void> =>
  updateLink(sock, ref, sizes);

/** Moves a link into the netns at netnsPath, optionally renaming it there in the same request. */
export function moveLink(sock: RtnlSocket, ref: LinkRef, netnsPath: string, newName?: string): Promise<void> {
  return updateLink(sock, ref, newName === undefined ? { netnsPath } : { netnsPath, name: newName });
}

/** Deletes a link (and its veth/netkit peer); false when there was no such link. */
export async function deleteLink(sock: RtnlSocket, ref: LinkRef): Promise<boolean> {
  const op = `delete link ${linkLabel(ref)}`;
  return deleted(sock.request(RTM_DELLINK, 0, selectLink(ref).toParts(), op), "ENODEV");
}

const policyName = (v: number | undefined): NetkitPolicy | undefined =>
  v === NETKIT_PASS ? "pass" : v === NETKIT_DROP ? "drop" : undefined;
const scrubName = (v: number | undefined): NetkitScrub | undefined =>
  v === NETKIT_SCRUB_DEFAULT ? "default" : v === NETKIT_SCRUB_NONE ? "none" : undefined;

function parseNetkit(data: Buffer): NetkitInfo {
  const a = decodeAttrs(data);
  const mode = attrU32(a, IFLA_NETKIT_MODE);
  const primary = attrU8(a, IFLA_NETKIT_PRIMARY);
  return {
    primary: primary === undefined ? undefined : primary !== 0,
    mode: mode === NETKIT_L2 ? "l2" : mode === NETKIT_L3 ? "l3" : undefined,
    policy: policyName(attrU32(a, IFLA_NETKIT_POLICY)),
    peerPolicy: policyName(attrU32(a, IFLA_NETKIT_PEER_POLICY)),
    scrub: scrubName(attrU32(a, IFLA_NETKIT_SCRUB)),
    peerScrub: scrubName(attrU32(a, IFLA_NETKIT_PEER_SCRUB)),
    headroom: attrU16(a, IFLA_NETKIT_HEADROOM),
    tailroom: attrU16(a, IFLA_NETKIT_TAILROOM),
  };
}

/** Decodes an RTM_NEWLINK message (reply or dump entry). */
function parseLink(m: NlMessage): Link {
  const [hdr, a] = splitPayload(m.payload, 16, "link");
  const h = decodeIfInfoMsg(hdr);
  let kind: string | undefined;
  let netkit: NetkitInfo | undefined;
  const linkinfo = a.get(IFLA_LINKINFO);
  if (linkinfo) {
    const li = decodeAttrs(linkinfo);
    kind = attrString(li, IFLA_INFO_KIND);
    const data = li.get(IFLA_INFO_DATA);
    if (kind === "netkit" && data) netkit = parseNetkit(data);
  }
  const mac = a.get(IFLA_ADDRESS);
  return {
    index: h.index,
    name: attrString(a, IFLA_IFNAME) ?? "",
    kind,
    flags: h.flags,
    up: (h.flags & IFF_UP) !== 0,
    lowerUp: (h.flags & IFF_LOWER_UP) !== 0,
    operState: attrU8(a, IFLA_OPERSTATE),
    mtu: attrU32(a, IFLA_MTU),
    minMtu: attrU32(a, IFLA_MIN_MTU),
    maxMtu: attrU32(a, IFLA_MAX_MTU),
    mac: mac && mac.length > 0 ? formatMac(mac) : undefined,
    txqlen: attrU32(a, IFLA_TXQLEN),
    master: attrU32(a, IFLA_MASTER),
    gsoMaxSize: attrU32(a, IFLA_GSO_MAX_SIZE),
    gsoMaxSegs: attrU32(a, IFLA_GSO_MAX_SEGS),
    groMaxSize: attrU32(a, IFLA_GRO_MAX_SIZE),
    gsoIpv4MaxSize: attrU32(a, IFLA_GSO_IPV4_MAX_SIZE),
    groIpv4MaxSize: attrU32(a, IFLA_GRO_IPV4_MAX_SIZE),
    tsoMaxSize: attrU32(a, IFLA_TSO_MAX_SIZE),
    tsoMaxSegs: attrU32(a, IFLA_TSO_MAX_SEGS),
    peerIndex: attrU32(a, IFLA_LINK),
    linkNetnsId: attrS32(a, IFLA_LINK_NETNSID),
    netkit,
  };
}

/** The link, or undefined when there is none by that index/name. */
export async function getLink(sock: RtnlSocket, ref: LinkRef): Promise<Link | undefined> {
  const w = selectLink(ref).u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
  try {
    const replies = await sock.request(RTM_GETLINK, 0, w.toParts(), `get link ${linkLabel(ref)}`);
    const m = replies.find((r) => r.type === RTM_NEWLINK);
    return m ? parseLink(m) : undefined;
  } catch (e) {
    if (isAbsent(e, "ENODEV")) return undefined;
    throw e;
  }
}

export async function requireLink(sock: RtnlSocket, ref: LinkRef): Promise<Link> {
  const link = await getLink(sock, ref);
  if (!link) throw new NotFoundError(`no interface ${linkLabel(ref)}${sock.where}`);
  return link;
}

export async function listLinks(sock: RtnlSocket): Promise<Link[]> {
  const w = new AttrWriter()
    .raw(encodeIfInfoMsg({ family: AF_UNSPEC }))
    .u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
  const msgs = await sock.dump(RTM_GETLINK, w.toParts(), "list links");
  return msgs.filter((m) => m.type === RTM_NEWLINK).map(parseLink);
}

export async function bigTcpLimits(sock: RtnlSocket, ref: LinkRef): Promise<BigTcpLimits> {
  const l = await requireLink(sock, ref);
  return {
    tsoMaxSize: l.tsoMaxSize,
    tsoMaxSegs: l.tsoMaxSegs,
    gsoMaxSize: l.gsoMaxSize,
    groMaxSize: l.groMaxSize,
    gsoIpv4MaxSize: l.gsoIpv4MaxSize,
    groIpv4MaxSize: l.groIpv4MaxSize,
  };
}

/** Resolves a LinkRef to an ifindex (names are looked up through the socket's netns). */
export async function resolveIndex(sock: RtnlSocket, ref: LinkRef): Promise<number> {
  if (typeof ref === "number") return ref;
  return (await requireLink(sock, ref)).index;
}
