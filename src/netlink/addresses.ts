// IPv4/IPv6 interface addresses: add (exclusive or replace), delete, list.
import { InvalidArgumentError } from "../errors.js";
import { IpAddress, type IpFamily, IpPrefix } from "../util/ip.js";
import {
  AttrWriter,
  attrString,
  attrU32,
  decodeIfAddrMsg,
  encodeIfAddrMsg,
  type NlMessage,
  splitPayload,
} from "./codec.js";
import {
  IFA_ADDRESS,
  IFA_F_DADFAILED,
  IFA_F_NODAD,
  IFA_F_NOPREFIXROUTE,
  IFA_F_PERMANENT,
  IFA_F_TENTATIVE,
  IFA_FLAGS,
  IFA_LABEL,
  IFA_LOCAL,
  RT_SCOPE_UNIVERSE,
  RTM_DELADDR,
  RTM_GETADDR,
  RTM_NEWADDR,
} from "./constants.js";
import { createRequest, deleted } from "./failures.js";
import { afOf, familyOfAf } from "./ip.js";
import { type LinkRef, linkLabel, resolveIndex } from "./links.js";
import type { NlRequest, RtnlSocket } from "./socket.js";

export interface AddressSpec {
  link: LinkRef;
  /** "10.0.0.2/24" or "fd00::2/64"; without a prefix length the address is a host address. */
  address: string;
  /** Point-to-point peer (IFA_ADDRESS); the prefix then applies to the peer. */
  peer?: string;
  /** Don't install the prefix route the kernel adds for the address's subnet. */
  noPrefixRoute?: boolean;
  /** IPv6: skip duplicate address detection so the address is usable at once. Default true for
   * IPv6 (a pod's addresses are allocated, not discovered), ignored for IPv4. */
  noDad?: boolean;
  /** RT_SCOPE_* value; default universe. */
  scope?: number;
}

export interface Address {
  index: number;
  family: IpFamily;
  /** IFA_LOCAL when present (v4, v6 with peer), else IFA_ADDRESS. */
  address: string;
  prefixLength: number;
  peer: string | undefined;
  scope: number;
  label: string | undefined;
  flags: number;
  permanent: boolean;
  tentative: boolean;
  dadFailed: boolean;
  noDad: boolean;
  noPrefixRoute: boolean;
}

function describe(spec: AddressSpec): string {
  return `${spec.address}${spec.peer ? ` peer ${spec.peer}` : ""} on ${linkLabel(spec.link)}`;
}

function build(index: number, spec: AddressSpec, forDelete: boolean): Uint8Array[] {
  const local = IpPrefix.parseLoose(spec.address, "address");
  const peer = spec.peer === undefined ? undefined : IpAddress.parse(spec.peer, "peer");
  if (peer && peer.family !== local.family) {
    throw new InvalidArgumentError(`address ${spec.address} and peer ${spec.peer} are of different families`);
  }
  let flags = 0;
  if (!forDelete) {
    if (spec.noPrefixRoute) flags |= IFA_F_NOPREFIXROUTE;
    if (local.family === 6 && spec.noDad !== false) flags |= IFA_F_NODAD;
  }
  const w = new AttrWriter().raw(
    encodeIfAddrMsg({
      family: afOf(local.family),
      prefixLength: local.prefixLength,
      flags: flags & 0xff,
      scope: spec.scope ?? RT_SCOPE_UNIVERSE,
      index,
    }),
  );
  // Like iproute2: IFA_LOCAL is our address, IFA_ADDRESS the peer (or the same address).
  w.bytes(IFA_LOCAL, local.address.toBytes());
  w.bytes(IFA_ADDRESS, (peer ?? local.address).toBytes());
  // Flags above bit 7 (NOPREFIXROUTE) only fit in the 32-bit attribute.
  if (flags !== 0) w.u32(IFA_FLAGS, flags);
  return w.toParts();
}

/** Adds an address; with replace, an existing identical address is updated instead of EEXIST. */
export async function addAddress(
  sock: RtnlSocket,
  spec: AddressSpec,
  opts: { replace?: boolean } = {},
): Promise<void> {
  IpPrefix.parseLoose(spec.address, "address");
  const index = await resolveIndex(sock, spec.link);
  await sock.send(addAddressRequest(index, spec, opts.replace === true));
}

/** The request addAddress sends, for a link known by index (batches). */
export function addAddressRequest(index: number, spec: AddressSpec, replace: boolean): NlRequest {
  return createRequest(
    RTM_NEWADDR,
    build(index, spec, false),
    `address ${describe(spec)}`,
    replace,
    "the address is already configured; use replace to update it",
  );
}

export const replaceAddress = (sock: RtnlSocket, spec: AddressSpec): Promise<void> =>
  addAddress(sock, spec, { replace: true });

/** Deletes an address; false when it was not there. */
export async function deleteAddress(sock: RtnlSocket, spec: AddressSpec): Promise<boolean> {
  const index = await resolveIndex(sock, spec.link);
  const op = `delete address ${describe(spec)}`;
  return deleted(sock.request(RTM_DELADDR, 0, build(index, spec, true), op), "EADDRNOTAVAIL", "ENOENT");
}

function parseAddress(m: NlMessage): Address | undefined {
  const [hdr, a] = splitPayload(m.payload, 8, "address");
  const h = decodeIfAddrMsg(hdr);
  const family = familyOfAf(h.family);
  if (!family) return undefined;
  const addr = a.get(IFA_ADDRESS);
  const local = a.get(IFA_LOCAL);
  const mine = local ?? addr;
  if (!mine) return undefined;
  const flags = attrU32(a, IFA_FLAGS) ?? h.flags;
  const peer = local && addr && !local.equals(addr) ? IpAddress.fromBytes(addr).text : undefined;
  return {
    index: h.index,
    family,
    address: IpAddress.fromBytes(mine).text,
    prefixLength: h.prefixLength,
    peer,
    scope: h.scope,
    label: attrString(a, IFA_LABEL),
    flags,
    permanent: (flags & IFA_F_PERMANENT) !== 0,
    tentative: (flags & IFA_F_TENTATIVE) !== 0,
    dadFailed: (flags & IFA_F_DADFAILED) !== 0,
    noDad: (flags & IFA_F_NODAD) !== 0,
    noPrefixRoute: (flags & IFA_F_NOPREFIXROUTE) !== 0,
  };
}

export interface AddressFilter {
  link?: LinkRef;
  family?: IpFamily;
}

export async function listAddresses(sock: RtnlSocket, filter: AddressFilter = {}): Promise<Address[]> {
  const index = filter.link === undefined ? 0 : await resolveIndex(sock, filter.link);
  const families: IpFamily[] = filter.family ? [filter.family] : [4, 6];
  const out: Address[] = [];
  for (const family of families) {
    // With strict checking the kernel filters by ifa_index itself.
    const body = [encodeIfAddrMsg({ family: afOf(family), index })];
    const msgs = await sock.dump(RTM_GETADDR, body, `list IPv${family} addresses`);
    for (const m of msgs) {
      if (m.type !== RTM_NEWADDR) continue;
      const addr = parseAddress(m);
      if (addr && (index === 0 || addr.index === index)) out.push(addr);
    }
  }
  return out;
}
