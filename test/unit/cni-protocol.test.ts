// Request validation of nkitd's CNI endpoint: what nkit-cni forwards, and the CNI codes of mistakes.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { CniCode, CniError, toCniError } from "../../src/cni/codes.js";
import { parseCniArgs, parseNetConf, parseRequest } from "../../src/cni/protocol.js";
import {
  IpamConflictError,
  IpamExhaustedError,
  NetlinkError,
  NetnsError,
  NkitError,
} from "../../src/errors.js";

const conf = (extra: Record<string, unknown> = {}) => ({
  cniVersion: "1.1.0",
  name: "nkit",
  type: "nkit-cni",
  mode: "wire",
  ...extra,
});

const line = (over: Record<string, unknown> = {}, config: unknown = conf()) =>
  JSON.stringify({
    v: 1,
    command: "ADD",
    containerId: "default-abc123",
    netns: "/run/netns/x",
    ifName: "eth0",
    args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=web",
    path: "/opt/cni/bin",
    config,
    ...over,
  });

function codeOf(fn: () => unknown): number | undefined {
  try {
    fn();
  } catch (e) {
    if (e instanceof CniError) return e.cniCode;
    throw e;
  }
  return undefined;
}

describe("parseRequest", () => {
  it("accepts a complete ADD and turns CNI_ARGS into labels", () => {
    const r = parseRequest(line());
    expect(r.command).toBe("ADD");
    expect(r.containerId).toBe("default-abc123");
    expect(r.argLabels).toEqual({ K8S_POD_NAMESPACE: "ns1", K8S_POD_NAME: "web" });
    expect(r.config.mode).toBe("wire");
    expect(r.config.cniVersion).toBe("1.1.0");
    expect(r.config.requestedIps).toEqual({});
  });

  it("defaults mode to auto and refuses unknown modes with code 7", () => {
    const { mode: _m, ...noMode } = conf();
    expect(parseRequest(line({}, noMode)).config.mode).toBe("auto");
    expect(parseRequest(line({}, conf({ mode: "ipam" }))).config.mode).toBe("ipam");
    let err: CniError | undefined;
    try {
      parseRequest(line({}, conf({ mode: "bridge" })));
    } catch (e) {
      err = e as CniError;
    }
    expect(err?.cniCode).toBe(CniCode.INVALID_CONFIG);
    expect(err?.message).toMatch(/unknown mode "bridge"/);
    expect(err?.details).toMatch(/ipam.*wire/);
  });

  it("names missing or invalid environment variables with code 4", () => {
    expect(codeOf(() => parseRequest(line({ netns: "" })))).toBe(CniCode.INVALID_ENV);
    expect(codeOf(() => parseRequest(line({ netns: "relative/ns" })))).toBe(CniCode.INVALID_ENV);
    expect(codeOf(() => parseRequest(line({ containerId: "" })))).toBe(CniCode.INVALID_ENV);
    expect(codeOf(() => parseRequest(line({ containerId: "-bad" })))).toBe(CniCode.INVALID_ENV);
    expect(codeOf(() => parseRequest(line({ containerId: "a/b" })))).toBe(CniCode.INVALID_ENV);
    expect(codeOf(() => parseRequest(line({ ifName: "" })))).toBe(CniCode.INVALID_ENV);
    expect(codeOf(() => parseRequest(line({ ifName: "a-name-longer-than-15" })))).toBe(CniCode.INVALID_ENV);
    expect(codeOf(() => parseRequest(line({ ifName: "eth:0" })))).toBe(CniCode.INVALID_ENV);
    expect(codeOf(() => parseRequest(line({ command: "FROB" })))).toBe(CniCode.INVALID_ENV);
    expect(codeOf(() => parseRequest(line({ args: "IgnoreUnknown=maybe" })))).toBe(CniCode.INVALID_ENV);
    expect(codeOf(() => parseRequest(line({ args: "novalue" })))).toBe(CniCode.INVALID_ENV);
    expect(() => parseRequest(line({ netns: "" }))).toThrow(/CNI_NETNS is required for ADD/);
  });

  it("lets DEL go without a netns (nerdctl sends none) and STATUS/GC without a container", () => {
    expect(parseRequest(line({ command: "DEL", netns: "" })).netns).toBe("");
    const st = parseRequest(line({ command: "STATUS", containerId: "", ifName: "", netns: "" }));
    expect(st.command).toBe("STATUS");
    const gc = parseRequest(
      line(
        { command: "GC", containerId: "", ifName: "", netns: "" },
        conf({ "cni.dev/valid-attachments": [{ containerID: "c1", ifname: "eth0" }] }),
      ),
    );
    expect(gc.config.validAttachments).toEqual([{ containerID: "c1", ifname: "eth0" }]);
  });

  it("refuses GC without valid-attachments and CHECK without prevResult (code 7)", () => {
    expect(codeOf(() => parseRequest(line({ command: "GC" })))).toBe(CniCode.INVALID_CONFIG);
    expect(codeOf(() => parseRequest(line({ command: "CHECK" })))).toBe(CniCode.INVALID_CONFIG);
    expect(
      codeOf(() => parseRequest(line({ command: "CHECK" }, conf({ cniVersion: "0.3.1", prevResult: {} })))),
    ).toBe(CniCode.INCOMPATIBLE_VERSION);
    const ok = parseRequest(
      line(
        { command: "CHECK" },
        conf({ prevResult: { cniVersion: "1.1.0", ips: [{ address: "10.0.0.1/32" }] } }),
      ),
    );
    expect(ok.config.prevResult?.ips?.[0]?.address).toBe("10.0.0.1/32");
  });

  it("checks versions, JSON and protocol framing", () => {
    expect(codeOf(() => parseRequest(line({}, conf({ cniVersion: "0.2.0" }))))).toBe(
      CniCode.INCOMPATIBLE_VERSION,
    );
    expect(codeOf(() => parseRequest(line({}, conf({ cniVersion: 1 }))))).toBe(CniCode.INVALID_CONFIG);
    expect(codeOf(() => parseRequest("{not json"))).toBe(CniCode.DECODE);
    expect(codeOf(() => parseRequest(line({ v: 2 })))).toBe(CniCode.PROTOCOL);
    expect(codeOf(() => parseRequest("[1,2]"))).toBe(CniCode.PROTOCOL);
    expect(codeOf(() => parseRequest(line({}, "text")))).toBe(CniCode.DECODE);
    expect(codeOf(() => parseRequest(line({}, conf({ name: "" }))))).toBe(CniCode.INVALID_CONFIG);
    expect(codeOf(() => parseRequest(line({}, conf({ socket: "run/x.sock" }))))).toBe(CniCode.INVALID_CONFIG);
    expect(codeOf(() => parseRequest(line({}, conf({ prevResult: { ips: [{ gateway: "x" }] } }))))).toBe(
      CniCode.DECODE,
    );
  });
});

describe("requested addresses", () => {
  it("takes the ips capability first, then args.cni.ips, then CNI_ARGS IP=, one per family", () => {
    const r = parseRequest(
      line(
        { args: "IgnoreUnknown=true;IP=10.9.0.7,fd00::7" },
        conf({ runtimeConfig: { ips: ["10.9.0.5/24"] }, args: { cni: { ips: ["fd00::6"] } } }),
      ),
    );
    expect(r.config.requestedIps).toEqual({ ipv4: "10.9.0.5", ipv6: "fd00::6" });
    expect(parseRequest(line({ args: "IP=10.9.0.7" })).config.requestedIps).toEqual({ ipv4: "10.9.0.7" });
  });

  it("refuses two addresses of one family from one source and non-addresses", () => {
    expect(
      codeOf(() => parseRequest(line({}, conf({ runtimeConfig: { ips: ["10.0.0.1", "10.0.0.2"] } })))),
    ).toBe(CniCode.INVALID_CONFIG);
    expect(codeOf(() => parseRequest(line({ args: "IP=nonsense" })))).toBe(CniCode.INVALID_CONFIG);
    expect(codeOf(() => parseRequest(line({}, conf({ runtimeConfig: { ips: "10.0.0.1" } }))))).toBe(
      CniCode.INVALID_CONFIG,
    );
  });

  it("validates portMappings and collects args.cni.labels", () => {
    const r = parseRequest(
      line(
        {},
        conf({
          runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "TCP" }] },
          args: { cni: { labels: [{ key: "app", value: "web" }] } },
        }),
      ),
    );
    expect(r.config.portMappings).toEqual([{ hostPort: 8080, containerPort: 80, protocol: "tcp" }]);
    expect(r.config.labels).toEqual({ app: "web" });
    expect(
      codeOf(() =>
        parseRequest(
          line({}, conf({ runtimeConfig: { portMappings: [{ hostPort: 0, containerPort: 80 }] } })),
        ),
      ),
    ).toBe(CniCode.INVALID_CONFIG);
  });
});

// Captured from the real runtimes by test/e2e/cni-portmappings.test.ts (a CRI pod asking for host
// ports 12000/tcp, 12053/udp on 127.0.0.1, 12080/tcp on ::1).
const FIXTURE_DIR = join(import.meta.dirname, "..", "fixtures", "cni");
const captured = readdirSync(FIXTURE_DIR).filter((f) => f.endsWith("-add.json"));

describe("portMappings as the runtimes send them", () => {
  it("has captured payloads of containerd 1.7 and 2.x", () => {
    expect(captured).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^containerd-1\.7\./),
        expect.stringMatching(/^containerd-2\./),
      ]),
    );
  });

  it.each(captured)("%s parses in both modes", (file) => {
    const stdin = JSON.parse(readFileSync(join(FIXTURE_DIR, file), "utf8")) as Record<string, unknown>;
    for (const mode of ["ipam", "wire"]) {
      const r = parseRequest(line({}, { ...stdin, type: "nkit-cni", mode }));
      expect(r.config.mode).toBe(mode);
      expect(r.config.portMappings).toEqual([
        { hostPort: 12000, containerPort: 80, protocol: "tcp" },
        { hostPort: 12053, containerPort: 53, protocol: "udp", hostIP: "127.0.0.1" },
        { hostPort: 12080, containerPort: 8080, protocol: "tcp", hostIP: "::1" },
      ]);
    }
  });

  it("decodes keys the way Go plugins do: exact spelling, else any case; conflicts refused", () => {
    const pm = (m: Record<string, unknown>) =>
      parseNetConf(conf({ runtimeConfig: { portMappings: [m] } }), "ADD").portMappings;
    expect(pm({ hostport: 1, CONTAINERPORT: 2, PROTOCOL: "UDP", hostip: "::" })).toEqual([
      { hostPort: 1, containerPort: 2, protocol: "udp", hostIP: "::" },
    ]);
    expect(pm({ HostPort: 5, hostPort: 5, ContainerPort: 6, Protocol: "" })).toEqual([
      { hostPort: 5, containerPort: 6, protocol: "tcp" },
    ]);
    expect(() => pm({ HostPort: 5, hostPort: 6, ContainerPort: 6 })).toThrow(
      /conflicting "HostPort" and "hostPort"/,
    );
    expect(() => pm({ HostPort: 5, ContainerPort: 6, HostIP: 7 })).toThrow(/hostIP must be a string/);
    expect(() => pm({ ContainerPort: 6 })).toThrow(
      /hostPort must be a port number 1\.\.65535, got undefined/,
    );
  });
});

describe("parseCniArgs", () => {
  it("accepts IgnoreUnknown=1 and =true, skips MAC and empty segments, keeps '=' in values", () => {
    expect(parseCniArgs("IgnoreUnknown=1;NERDCTL_CNI_DHCP_HOSTNAME=web;MAC=aa:bb;;X=a=b")).toEqual({
      labels: { NERDCTL_CNI_DHCP_HOSTNAME: "web", X: "a=b" },
      ips: [],
    });
    expect(parseCniArgs("IgnoreUnknown=true;NOMAD_ALLOC_ID=1234").labels).toEqual({ NOMAD_ALLOC_ID: "1234" });
    expect(parseCniArgs("")).toEqual({ labels: {}, ips: [] });
  });
});

describe("error mapping", () => {
  it("maps nkitd's typed errors to stable CNI codes", () => {
    expect(toCniError(new IpamExhaustedError("10.0.0.0/30", 2)).cniCode).toBe(CniCode.IPAM_EXHAUSTED);
    expect(toCniError(new IpamConflictError("taken")).cniCode).toBe(CniCode.IPAM_CONFLICT);
    expect(toCniError(new NetlinkError("RTM_NEWLINK", 17, "EEXIST", undefined)).cniCode).toBe(
      CniCode.DATAPATH,
    );
    expect(toCniError(new NetnsError("/x", "gone")).cniCode).toBe(CniCode.NETNS);
    const internal = toCniError(new Error("boom"));
    expect(internal.cniCode).toBe(CniCode.INTERNAL);
    expect(internal.message).toMatch(/boom/);
    const e = toCniError(new IpamExhaustedError("10.0.0.0/30", 2));
    expect(e.details).toBe("NKIT_IPAM_EXHAUSTED");
    // A CNI error is an NkitError like every other: one string code, the CNI number beside it.
    expect(e).toBeInstanceOf(NkitError);
    expect(e).toMatchObject({ code: "NKIT_CNI", cniCode: CniCode.IPAM_EXHAUSTED, name: "CniError" });
    expect(toCniError(e)).toBe(e);
  });

  it("parseNetConf needs an object", () => {
    expect(codeOf(() => parseNetConf(null, "ADD"))).toBe(CniCode.DECODE);
  });
});
