import { describe, expect, it } from "vitest";
import { cidrContains, cidrSize, cidrsOverlap, formatIp, parseCidr, parseIp } from "../../src/ipam/cidr.js";

describe("cidr", () => {
  it("round-trips IPv4 and IPv6 text", () => {
    for (const a of ["10.47.0.1", "0.0.0.0", "255.255.255.255"]) {
      const { family, value } = parseIp(a);
      expect(formatIp(family, value)).toBe(a);
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
      const { family, value } = parseIp(input);
      expect(family).toBe(6);
      expect(formatIp(6, value)).toBe(want);
    }
  });

  it("parses prefixes and rejects host bits and bad lengths with a hint", () => {
    const c = parseCidr("10.47.0.0/24");
    expect(c.text).toBe("10.47.0.0/24");
    expect(cidrSize(c)).toBe(256n);
    expect(cidrSize(parseCidr("fd47::/64"))).toBe(1n << 64n);
    expect(() => parseCidr("10.47.0.1/24")).toThrow(/did you mean 10.47.0.0\/24/);
    expect(() => parseCidr("10.47.0.0/33")).toThrow(/prefix length must be 0..32/);
    expect(() => parseCidr("10.47.0.0")).toThrow(/not a CIDR/);
    expect(() => parseCidr("nonsense/8")).toThrow(/not an IPv4 or IPv6/);
  });

  it("answers containment and overlap per family", () => {
    const v4 = parseCidr("10.47.0.0/24");
    expect(cidrContains(v4, 4, parseIp("10.47.0.200").value)).toBe(true);
    expect(cidrContains(v4, 4, parseIp("10.47.1.0").value)).toBe(false);
    expect(cidrContains(v4, 6, parseIp("fd47::1").value)).toBe(false);
    expect(cidrsOverlap(v4, parseCidr("10.47.0.128/25"))).toBe(true);
    expect(cidrsOverlap(v4, parseCidr("10.48.0.0/16"))).toBe(false);
    expect(cidrsOverlap(parseCidr("fd47::/64"), parseCidr("fd47::/48"))).toBe(true);
  });
});
