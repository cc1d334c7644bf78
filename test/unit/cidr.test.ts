import { describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../../src/errors.js";
import {
  cidrContains,
  cidrSize,
  cidrsOverlap,
  ipValue,
  ipValueText,
  parseCidr,
} from "../../src/ipam/cidr.js";
import { canonicalIp } from "../../src/util/ip.js";

describe("cidr", () => {
  it("round-trips IPv4 and IPv6 text", () => {
    for (const a of ["10.47.0.1", "0.0.0.0", "255.255.255.255"]) {
      const { family, value } = ipValue(a);
      expect(ipValueText(family, value)).toBe(a);
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
      const { family, value } = ipValue(input);
      expect(family).toBe(6);
      expect(ipValueText(6, value)).toBe(want);
      // The integer path and the text helper agree on the one canonical form.
      expect(canonicalIp(input)).toBe(want);
    }
    expect(() => canonicalIp("10.0.0.256", "pod address")).toThrow(InvalidArgumentError);
    expect(() => canonicalIp("fe80::1%eth0")).toThrow(/is not an IPv4 or IPv6 address/);
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
    expect(cidrContains(v4, 4, ipValue("10.47.0.200").value)).toBe(true);
    expect(cidrContains(v4, 4, ipValue("10.47.1.0").value)).toBe(false);
    expect(cidrContains(v4, 6, ipValue("fd47::1").value)).toBe(false);
    expect(cidrsOverlap(v4, parseCidr("10.47.0.128/25"))).toBe(true);
    expect(cidrsOverlap(v4, parseCidr("10.48.0.0/16"))).toBe(false);
    expect(cidrsOverlap(parseCidr("fd47::/64"), parseCidr("fd47::/48"))).toBe(true);
  });
});
