// Static (permanent) neighbour entries, IPv4 ARP and IPv6 NDP alike.
import { InvalidArgumentError } from "../errors.js";
import { formatMac, IpAddress, type IpFamily, parseMac } from "../util/ip.js";
import { AttrWriter, decodeNdMsg, encodeNdMsg, type NlMessage, splitPayload } from "./codec.js";
import {
  NDA_DST,
  NDA_IFINDEX,
  NDA_LLADDR,
  NUD_NOARP,
  NUD_PERMANENT,
  RTM_DELNEIGH,
  RTM_GETNEIGH,
  RTM_NEWNEIGH,
} from "./constants.js";
import { createRequest, deleted } from "./failures.js";
import { afOf, familyOfAf } from "./ip.js";
import { type LinkRef, linkLabel, resolveIndex } from "./links.js";
import type { NlRequest, RtnlSocket } from "./socket.js";

export interface NeighbourSpec {
  link: LinkRef;
  address: string;
  /** Link-layer address; required to add, ignored on delete. */
  lladdr?: string;
}

export interface Neighbour {
  index: number;
  family: IpFamily;
  address: string;
  lladdr: string | undefined;
  /** NUD_* bits. */
  state: number;
  permanent: boolean;
}

function build(index: number, spec: NeighbourSpec, state: number): Uint8Array[] {
  const ip = IpAddress.parse(spec.address, "neighbour address");
  const w = new AttrWriter().raw(encodeNdMsg({ family: afOf(ip.family), index, state }));
  w.bytes(NDA_DST, ip.toBytes());
  if (spec.lladdr !== undefined) w.bytes(NDA_LLADDR, parseMac(spec.lladdr, "lladdr"));
  return w.toParts();
}

const describe = (s: NeighbourSpec): string =>
  `${s.address}${s.lladdr ? ` lladdr ${s.lladdr}` : ""} on ${linkLabel(s.link)}`;

/** Adds a permanent entry; with replace, an existing entry for the address is overwritten. */
export async function addNeighbour(
  sock: RtnlSocket,
  spec: NeighbourSpec,
  opts: { replace?: boolean } = {},
): Promise<void> {
  addNeighbourRequest(1, spec, false); // validates before any lookup
  const index = await resolveIndex(sock, spec.link);
  await sock.send(addNeighbourRequest(index, spec, opts.replace === true));
}

/** The request addNeighbour sends, for a link known by index (batches). */
export function addNeighbourRequest(index: number, spec: NeighbourSpec, replace: boolean): NlRequest {
  if (spec.lladdr === undefined)
    throw new InvalidArgumentError(`neighbour ${spec.address}: lladdr is required`);
  return createRequest(
    RTM_NEWNEIGH,
    build(index, spec, NUD_PERMANENT),
    `neighbour ${describe(spec)}`,
    replace,
    "a neighbour entry for that address exists; use replace to overwrite it",
  );
}

export const replaceNeighbour = (sock: RtnlSocket, spec: NeighbourSpec): Promise<void> =>
  addNeighbour(sock, spec, { replace: true });

/** Deletes an entry; false when there was none. */
export async function deleteNeighbour(sock: RtnlSocket, spec: NeighbourSpec): Promise<boolean> {
  const index = await resolveIndex(sock, spec.link);
  const payload = build(index, { link: spec.link, address: spec.address }, 0);
  return deleted(
    sock.request(RTM_DELNEIGH, 0, payload, `delete neighbour ${describe(spec)}`),
    "ENOENT",
    "ESRCH",
  );
}

function parseNeighbour(m: NlMessage): Neighbour | undefined {
  const [hdr, a] = splitPayload(m.payload, 12, "neighbour");
  const h = decodeNdMsg(hdr);
  const family = familyOfAf(h.family);
  const dst = a.get(NDA_DST);
  if (!family || !dst) return undefined;
  const ll = a.get(NDA_LLADDR);
  return {
    index: h.index,
    family,
    address: IpAddress.fromBytes(dst).text,
    lladdr: ll && ll.length > 0 ? formatMac(ll) : undefined,
    state: h.state,
    permanent: (h.state & NUD_PERMANENT) !== 0,
  };
}

export interface NeighbourFilter {
  link?: LinkRef;
  family?: IpFamily;
  /** Include NOARP entries (multicast, loopback); default false, like `ip neigh`. */
  includeNoArp?: boolean;
}

export async function listNeighbours(sock: RtnlSocket, filter: NeighbourFilter = {}): Promise<Neighbour[]> {
  const index = filter.link === undefined ? 0 : await resolveIndex(sock, filter.link);
  const families: IpFamily[] = filter.family ? [filter.family] : [4, 6];
  const out: Neighbour[] = [];
  for (const family of families) {
    // Strict checking wants the device filter as NDA_IFINDEX, not in the header.
    const w = new AttrWriter().raw(encodeNdMsg({ family: afOf(family) }));
    if (index !== 0) w.u32(NDA_IFINDEX, index);
    const msgs = await sock.dump(RTM_GETNEIGH, w.toParts(), `list IPv${family} neighbours`);
    for (const m of msgs) {
      if (m.type !== RTM_NEWNEIGH) continue;
      const n = parseNeighbour(m);
      if (!n || (index !== 0 && n.index !== index)) continue;
      if (!filter.includeNoArp && n.state & NUD_NOARP) continue;
      out.push(n);
    }
  }
  return out;
}
