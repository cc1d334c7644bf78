// CNI result building: /32 and /128 pod addresses, gateways per datapath mode, chaining onto
// prevResult, and the per-version format.
import { describe, expect, it } from "vitest";
import { buildResult, formatForVersion, resultAddresses } from "../../src/cni/result.js";

describe("buildResult", () => {
  it("reports host device and pod eth0 with /32, /128, gateways and default routes (wire, veth)", () => {
    const r = buildResult({
      cniVersion: "1.1.0",
      hostInterface: { name: "nk0123456789a" },
      podInterface: { name: "eth0", sandbox: "/run/netns/p" },
      addresses: { ipv4: "10.47.0.5", ipv6: "fd47::5" },
      gateways: { ipv4: "169.254.1.1", ipv6: "fe80::1" },
    });
    expect(r).toEqual({
      cniVersion: "1.1.0",
      interfaces: [{ name: "nk0123456789a" }, { name: "eth0", sandbox: "/run/netns/p" }],
      ips: [
        { address: "10.47.0.5/32", gateway: "169.254.1.1", interface: 1 },
        { address: "fd47::5/128", gateway: "fe80::1", interface: 1 },
      ],
      routes: [
        { dst: "0.0.0.0/0", gw: "169.254.1.1" },
        { dst: "::/0", gw: "fe80::1" },
      ],
      dns: {},
    });
  });

  it("reports only the pod interface in ipam mode, and on-link routes without gateways (netkit)", () => {
    const r = buildResult({
      cniVersion: "1.0.0",
      podInterface: { name: "eth0", sandbox: "/proc/1/ns/net" },
      addresses: { ipv4: "10.47.0.6" },
    });
    expect(r.interfaces).toEqual([{ name: "eth0", sandbox: "/proc/1/ns/net" }]);
    expect(r.ips).toEqual([{ address: "10.47.0.6/32", interface: 0 }]);
    expect(r.routes).toEqual([{ dst: "0.0.0.0/0" }]);
  });

  it("appends to prevResult, shifting interface indices and keeping its dns", () => {
    const r = buildResult({
      cniVersion: "1.1.0",
      prevResult: {
        cniVersion: "1.1.0",
        interfaces: [{ name: "lo", sandbox: "/run/netns/p" }],
        ips: [{ address: "127.0.0.1/8", interface: 0 }],
        routes: [{ dst: "10.0.0.0/8" }],
        dns: { nameservers: ["10.0.0.53"] },
      },
      podInterface: { name: "eth0", sandbox: "/run/netns/p" },
      addresses: { ipv4: "10.47.0.7" },
    });
    expect(r.interfaces?.map((i) => i.name)).toEqual(["lo", "eth0"]);
    expect(r.ips).toEqual([
      { address: "127.0.0.1/8", interface: 0 },
      { address: "10.47.0.7/32", interface: 1 },
    ]);
    expect(r.routes).toHaveLength(2);
    expect(r.dns).toEqual({ nameservers: ["10.0.0.53"] });
  });

  it("adds ips[].version for spec versions before 1.0.0 and drops it from 1.0.0 on", () => {
    const old = buildResult({
      cniVersion: "0.4.0",
      podInterface: { name: "eth0", sandbox: "/x" },
      addresses: { ipv4: "10.47.0.8", ipv6: "fd47::8" },
    });
    expect(old.ips?.map((i) => i.version)).toEqual(["4", "6"]);
    const now = formatForVersion({ ...old, cniVersion: "1.1.0" });
    expect(now.ips?.every((i) => i.version === undefined)).toBe(true);
    expect(resultAddresses(now)).toEqual(["10.47.0.8", "fd47::8"]);
  });
});
