import { describe, expect, it } from "vitest";
import { mapAddress, prefixKeyOf } from "../../src/bpf/shared.js";
import { InvalidArgumentError } from "../../src/errors.js";
import { AddressError, IpAddress, IpPrefix } from "../../src/util/ip.js";

describe("cidr", () => {
  it("round-trips IPv4 and IPv6 text", () => {
    for (const a of ["10.47.0.1", "0.0.0.0", "255.255.255.255"]) {
      const { family, value } = IpAddress.parse(a);
      expect(IpAddress.fromValue(family, value).text).toBe(a);
    }
    const cases: [string, string][] = [
      ["fd47::1", "fd47::1"],
      ["FD47:0:0:0:0:0:0:1", "fd47::1"],
      ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
      ["::", "::"],
      ["::ffff:10.0.0.1", "::ffff:a00:1"],
      ["fe80::1:2:3:4", "fe80::1:2:3:4"],
      ["1:0:1:0:1:0:1:0", "1:0:1:0:1:0:1:0"],
    ];
    for (const [input, want] of cases) {
      const { family, value } = IpAddress.parse(input);
      expect(family).toBe(6);
      expect(IpAddress.fromValue(6, value).text).toBe(want);
      // The integer path and the text helper agree on the one canonical form.
      expect(IpAddress.parse(input).text).toBe(want);
    }
    expect(() => IpAddress.parse("10.0.0.256", "pod address")).toThrow(InvalidArgumentError);
    expect(() => IpAddress.parse("fe80::1%eth0")).toThrow(/is not an IPv4 or IPv6 address/);
  });

  it("parses prefixes and rejects host bits and bad lengths with a hint", () => {
    const c = IpPrefix.parse("10.47.0.0/24");
    expect(c.text).toBe("10.47.0.0/24");
    expect(c.size).toBe(256n);
    expect(IpPrefix.parse("fd47::/64").size).toBe(1n << 64n);
    expect(() => IpPrefix.parse("10.47.0.1/24")).toThrow(/did you mean 10.47.0.0\/24/);
    expect(() => IpPrefix.parse("10.47.0.0/33")).toThrow(/prefix length must be 0..32/);
    expect(() => IpPrefix.parse("10.47.0.0")).toThrow(/not a CIDR/);
    expect(() => IpPrefix.parse("nonsense/8")).toThrow(/not an IPv4 or IPv6/);
  });

  it("answers containment and overlap per family", () => {
    const v4 = IpPrefix.parse("10.47.0.0/24");
    expect(v4.contains(IpAddress.parse("10.47.0.200"))).toBe(true);
    expect(v4.contains(IpAddress.parse("10.47.1.0"))).toBe(false);
    expect(v4.contains(IpAddress.parse("fd47::1"))).toBe(false);
    expect(v4.overlaps(IpPrefix.parse("10.47.0.128/25"))).toBe(true);
    expect(v4.overlaps(IpPrefix.parse("10.48.0.0/16"))).toBe(false);
    expect(IpPrefix.parse("fd47::/64").overlaps(IpPrefix.parse("fd47::/48"))).toBe(true);
  });

  it("is one immutable value: equal by family and bytes, written as its canonical text", () => {
    const a = IpAddress.parse("FD47:0::5");
    expect(a.equals(IpAddress.fromBytes(a.toBytes()))).toBe(true);
    expect(a.equals(IpAddress.parse("fd47::6"))).toBe(false);
    // Same leading bytes, other family: the 16-byte map form alone would call them equal.
    expect(IpAddress.parse("10.0.0.1").equals(IpAddress.parse("a00:1::"))).toBe(false);
    expect(mapAddress(IpAddress.parse("10.0.0.1")).addr).toEqual(mapAddress(IpAddress.parse("a00:1::")).addr);
    a.toBytes().fill(0xff);
    expect(a.text).toBe("fd47::5");
    expect(Object.isFrozen(a)).toBe(true);
    expect(JSON.stringify({ a, p: IpPrefix.parse("fd47::/64") })).toBe('{"a":"fd47::5","p":"fd47::/64"}');
    expect(() => IpAddress.parse("10.0.0", "pod address")).toThrow(AddressError);
    expect(IpAddress.tryParse("fe80::1%eth0")).toBeUndefined();
  });

  it("keeps an interface address's host bits; the trie key is its network", () => {
    const p = IpPrefix.parseLoose("10.47.0.5/24", "address");
    expect(p.text).toBe("10.47.0.5/24");
    expect(p.network.text).toBe("10.47.0.0");
    expect(p.contains(IpAddress.parse("10.47.0.9"))).toBe(true);
    expect(IpPrefix.parseLoose("fd47::5").prefixLength).toBe(128);
    expect(() => IpPrefix.parseLoose("10.0.0.0/x", "route destination")).toThrow(
      'route destination "10.0.0.0/x": prefix length must be 0..32',
    );
    expect(prefixKeyOf(p)).toEqual(prefixKeyOf(IpPrefix.parse("10.47.0.0/24")));
  });
});
