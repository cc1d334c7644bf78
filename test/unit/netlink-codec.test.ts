// Byte-level checks of the rtnetlink encoding, read back with an independent TLV walker so a bug in
// the codec cannot hide itself.
import { describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../../src/errors.js";
import { decodeError, encodeMessage } from "../../src/netlink/codec.js";
import { buildNetkitCreate, buildVethCreate } from "../../src/netlink/links.js";
import { buildRoute } from "../../src/netlink/routes.js";
import { IpAddress, IpPrefix } from "../../src/util/ip.js";

interface Tlv {
  type: number;
  nested: boolean;
  data: Buffer;
}

function walk(buf: Buffer): Tlv[] {
  const out: Tlv[] = [];
  let off = 0;
  while (off + 4 <= buf.length) {
    const len = buf.readUInt16LE(off);
    const rawType = buf.readUInt16LE(off + 2);
    expect(len).toBeGreaterThanOrEqual(4);
    out.push({
      type: rawType & 0x3fff,
      nested: (rawType & 0x8000) !== 0,
      data: buf.subarray(off + 4, off + len),
    });
    off += (len + 3) & ~3;
  }
  expect(off).toBe(buf.length);
  return out;
}

const one = (tlvs: Tlv[], type: number): Tlv => {
  const found = tlvs.filter((t) => t.type === type);
  expect(found, `attribute ${type}`).toHaveLength(1);
  return found[0]!;
};
const str = (t: Tlv): string => t.data.toString("utf8");
const u32 = (t: Tlv): number => {
  expect(t.data.length).toBe(4);
  return t.data.readUInt32LE(0);
};
const emptyIfinfomsg = Buffer.alloc(16);

describe("veth create message", () => {
  const body = Buffer.concat(
    buildVethCreate({ name: "nkhost0", peerName: "eth0", mtu: 1450, peerMac: "02:00:00:00:00:02" }, 7),
  );

  it("starts with a zeroed ifinfomsg and names the host side", () => {
    expect(body.subarray(0, 16)).toEqual(emptyIfinfomsg);
    const attrs = walk(body.subarray(16));
    expect(str(one(attrs, 3))).toBe("nkhost0\0"); // IFLA_IFNAME
    expect(u32(one(attrs, 4))).toBe(1450); // IFLA_MTU
    expect(attrs.some((a) => a.type === 1)).toBe(false); // no host MAC asked for
  });

  it("nests kind and peer info like iproute2", () => {
    const linkinfo = one(walk(body.subarray(16)), 18); // IFLA_LINKINFO
    expect(linkinfo.nested).toBe(true);
    const li = walk(linkinfo.data);
    expect(str(one(li, 1))).toBe("veth\0"); // IFLA_INFO_KIND
    const data = one(li, 2); // IFLA_INFO_DATA
    expect(data.nested).toBe(true);
    const peer = one(walk(data.data), 1); // VETH_INFO_PEER
    expect(peer.nested).toBe(false); // starts with a struct, not attributes
    expect(peer.data.subarray(0, 16)).toEqual(emptyIfinfomsg);
    const pa = walk(peer.data.subarray(16));
    expect(str(one(pa, 3))).toBe("eth0\0");
    expect(u32(one(pa, 4))).toBe(1450); // peer inherits the MTU
    expect(one(pa, 1).data).toEqual(Buffer.from([2, 0, 0, 0, 0, 2])); // IFLA_ADDRESS
    expect(u32(one(pa, 28))).toBe(7); // IFLA_NET_NS_FD
  });
});

describe("netkit create message", () => {
  function infoData(body: Buffer): Tlv[] {
    const li = walk(one(walk(body.subarray(16)), 18).data);
    expect(str(one(li, 1))).toBe("netkit\0");
    return walk(one(li, 2).data);
  }

  it("encodes mode, policies and the peer block with the netns fd", () => {
    const data = infoData(
      Buffer.concat(
        buildNetkitCreate(
          { name: "nk0", peerName: "eth0", policy: "forward", peerPolicy: "blackhole", mtu: 9000 },
          5,
        ),
      ),
    );
    expect(u32(one(data, 5))).toBe(1); // IFLA_NETKIT_MODE = NETKIT_L3 (default)
    expect(u32(one(data, 3))).toBe(0); // IFLA_NETKIT_POLICY = NETKIT_PASS
    expect(u32(one(data, 4))).toBe(2); // IFLA_NETKIT_PEER_POLICY = NETKIT_DROP
    const peer = one(data, 1); // IFLA_NETKIT_PEER_INFO
    expect(peer.nested).toBe(false);
    expect(peer.data.subarray(0, 16)).toEqual(emptyIfinfomsg);
    const pa = walk(peer.data.subarray(16));
    expect(str(one(pa, 3))).toBe("eth0\0");
    expect(u32(one(pa, 4))).toBe(9000);
    expect(u32(one(pa, 28))).toBe(5);
    // Only sent when asked: older kernels (< 6.13 / 6.14) do not know them.
    for (const t of [2, 6, 7, 8, 9]) expect(data.some((a) => a.type === t)).toBe(false);
  });

  it("sends scrub, headroom and tailroom only when given, with their widths", () => {
    const data = infoData(
      Buffer.concat(
        buildNetkitCreate(
          {
            name: "nk0",
            peerName: "eth0",
            mode: "l2",
            scrub: "none",
            peerScrub: "default",
            headroom: 32,
            tailroom: 16,
          },
          undefined,
        ),
      ),
    );
    expect(u32(one(data, 5))).toBe(0); // NETKIT_L2
    expect(u32(one(data, 6))).toBe(0); // SCRUB_NONE
    expect(u32(one(data, 7))).toBe(1); // SCRUB_DEFAULT
    expect(one(data, 8).data).toEqual(Buffer.from([32, 0])); // u16 headroom
    expect(one(data, 9).data).toEqual(Buffer.from([16, 0])); // u16 tailroom
    expect(data.some((a) => a.type === 3 || a.type === 4)).toBe(false); // kernel defaults
    const pa = walk(one(data, 1).data.subarray(16));
    expect(pa.some((a) => a.type === 28)).toBe(false); // peer stays in our netns
  });

  it("rejects options the kernel would refuse", () => {
    expect(() =>
      buildNetkitCreate({ name: "nk0", peerName: "eth0", mac: "02:00:00:00:00:01" }, undefined),
    ).toThrow(InvalidArgumentError);
    expect(() => buildNetkitCreate({ name: "a-name-that-is-too-long", peerName: "eth0" }, undefined)).toThrow(
      /1\.\.15 bytes/,
    );
    expect(() => buildNetkitCreate({ name: "nk0", peerName: "eth0", headroom: 70000 }, undefined)).toThrow(
      /0\.\.65535/,
    );
  });
});

describe("route message", () => {
  it("encodes a v4 default route via an onlink gateway", () => {
    const body = Buffer.concat(
      buildRoute({ dst: "default", family: 4, gateway: "169.254.1.1", dev: 3, onlink: true }, 3),
    );
    // struct rtmsg
    expect([...body.subarray(0, 8)]).toEqual([2, 0, 0, 0, 254, 3, 0, 1]); // AF_INET, dst_len 0, main, boot, universe, unicast
    expect(body.readUInt32LE(8)).toBe(4); // RTNH_F_ONLINK
    const a = walk(body.subarray(12));
    expect(u32(one(a, 15))).toBe(254); // RTA_TABLE
    expect(u32(one(a, 4))).toBe(3); // RTA_OIF
    expect([...one(a, 5).data]).toEqual([169, 254, 1, 1]); // RTA_GATEWAY
    expect(a.some((t) => t.type === 1)).toBe(false); // no RTA_DST for default
  });

  it("encodes a v6 device route with scope link, table above 255 and an MTU metric", () => {
    const body = Buffer.concat(buildRoute({ dst: "fd47::/64", dev: 9, table: 1000, mtu: 1400 }, 9));
    expect(body.readUInt8(0)).toBe(10);
    expect(body.readUInt8(1)).toBe(64);
    expect(body.readUInt8(4)).toBe(0); // RT_TABLE_UNSPEC: see RTA_TABLE
    expect(body.readUInt8(6)).toBe(253); // RT_SCOPE_LINK
    const a = walk(body.subarray(12));
    expect(u32(one(a, 15))).toBe(1000);
    expect(one(a, 1).data).toEqual(IpAddress.parse("fd47::").toBytes());
    const metrics = one(a, 8);
    expect(metrics.nested).toBe(true);
    expect(u32(one(walk(metrics.data), 2))).toBe(1400); // RTAX_MTU
  });

  it("rejects mixed families", () => {
    expect(() => buildRoute({ dst: "10.0.0.0/8", gateway: "fe80::1" }, 1)).toThrow(/not IPv4/);
  });
});

describe("message framing and NLMSG_ERROR with extended ack", () => {
  it("frames a message with length, type, flags, seq and 4-byte padding", () => {
    const m = encodeMessage(16, 0x605, 42, [Buffer.from([1, 2, 3])]);
    expect(m.length).toBe(20);
    expect(m.readUInt32LE(0)).toBe(19);
    expect(m.readUInt16LE(4)).toBe(16);
    expect(m.readUInt16LE(6)).toBe(0x605);
    expect(m.readUInt32LE(8)).toBe(42);
    expect(m.readUInt32LE(12)).toBe(0);
  });

  function tlv(type: number, data: Buffer): Buffer {
    const len = 4 + data.length;
    const b = Buffer.alloc((len + 3) & ~3);
    b.writeUInt16LE(len, 0);
    b.writeUInt16LE(type, 2);
    data.copy(b, 4);
    return b;
  }

  const request = encodeMessage(16, 0x605, 7, [Buffer.alloc(16), tlv(4, Buffer.from([0x40, 0x42, 0x0f, 0]))]);

  it("parses a capped error with message and offset", () => {
    const errno = Buffer.alloc(4);
    errno.writeInt32LE(-22);
    const payload = Buffer.concat([
      errno,
      request.subarray(0, 16),
      tlv(1, Buffer.from("mtu greater than device maximum\0")),
      tlv(2, Buffer.from([32, 0, 0, 0])),
    ]);
    const e = decodeError(payload, 0x100 | 0x200); // NLM_F_CAPPED | NLM_F_ACK_TLVS
    expect(e).toEqual({ errno: 22, message: "mtu greater than device maximum", offset: 32, requestSeq: 7 });
  });

  it("skips the echoed request when the ack is not capped", () => {
    const errno = Buffer.alloc(4);
    errno.writeInt32LE(-95);
    const payload = Buffer.concat([errno, request, tlv(1, Buffer.from("Unknown device type\0"))]);
    expect(decodeError(payload, 0x200)).toMatchObject({
      errno: 95,
      message: "Unknown device type",
      requestSeq: 7,
    });
  });

  it("reads a plain ack as errno 0 without text", () => {
    const payload = Buffer.concat([Buffer.alloc(4), request.subarray(0, 16)]);
    expect(decodeError(payload, 0x100)).toEqual({
      errno: 0,
      message: undefined,
      offset: undefined,
      requestSeq: 7,
    });
  });
});

describe("IP addresses", () => {
  it.each([
    ["fd47::5", "fd47::5"],
    ["::", "::"],
    ["::1", "::1"],
    ["FE80::1", "fe80::1"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["1:0:0:2:0:0:0:3", "1:0:0:2::3"],
    ["2001:db8:1:2:3:4:5:6", "2001:db8:1:2:3:4:5:6"],
    ["::ffff:10.0.0.1", "::ffff:a00:1"],
    ["10.47.0.5", "10.47.0.5"],
  ])("%s round-trips as %s", (input, out) => {
    expect(IpAddress.fromBytes(IpAddress.parse(input).toBytes()).text).toBe(out);
  });

  it("parses prefixes and rejects junk", () => {
    expect(IpPrefix.parseLoose("10.0.0.0/8")).toMatchObject({ family: 4, prefixLength: 8 });
    expect(IpPrefix.parseLoose("fd00::1")).toMatchObject({ family: 6, prefixLength: 128 });
    expect(() => IpPrefix.parseLoose("10.0.0.0/33")).toThrow(InvalidArgumentError);
    expect(() => IpAddress.parse("fe80::1%eth0")).toThrow(InvalidArgumentError);
    expect(() => IpAddress.parse("10.0.0")).toThrow(InvalidArgumentError);
  });
});
