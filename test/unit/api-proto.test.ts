// proto/nkit/v1 through the runtime-loaded codecs, error mapping, reason names, ring buffer framing
// and the containerd NRI config parser/patcher.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Metadata, status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { fromServiceError, toServiceError } from "../../src/api/errors.js";
import { apiServices, messageCodec } from "../../src/api/proto.js";
import { canonicalReason, reasonCodeOf } from "../../src/api/reason-names.js";
import type * as T from "../../src/api/types.js";
import { enableNri, nriState } from "../../src/cli/containerd.js";
import { errorText, exitCodeOf, usageError } from "../../src/cli/output.js";
import { ClosedError, NkitError, NotFoundError } from "../../src/errors.js";
import { splitRecords } from "../../src/native/ringbuf.js";

describe("nkit.v1 proto", () => {
  it("round-trips messages with uint64 as strings and every field present", () => {
    const c = messageCodec<T.GetEndpointResponse>("GetEndpointResponse");
    const msg: T.GetEndpointResponse = {
      endpoint: {
        id: "pod-1",
        epNum: 3,
        mode: "veth",
        hostIfName: "nk0123456789a",
        hostIfindex: 42,
        podIfName: "eth0",
        netnsPath: "/run/netns/x",
        addresses: { ipv4: "10.0.0.2", ipv6: "" },
        labels: { app: "web" },
      },
      counters: [
        { reason: "DROP_NO_ROUTE", reasonCode: 68, drop: true, packets: "18446744073709551615", bytes: "7" },
      ],
    };
    expect(c.decode(c.encode(msg))).toEqual(msg);
    const empty = messageCodec<T.MonitorRequest>("MonitorRequest");
    expect(empty.decode(Buffer.alloc(0))).toEqual({ endpointId: "", reasons: [] });
  });

  it("defines the services with their gRPC paths", () => {
    const s = apiServices();
    expect(s.nkit.Status.path).toBe("/nkit.v1.Nkit/Status");
    expect(s.nkit.Monitor.responseStream).toBe(true);
    expect(s.admin.WireEndpoint.path).toBe("/nkit.v1.NkitAdmin/WireEndpoint");
  });

  it("maps nkit errors to gRPC status codes and back", () => {
    const se = toServiceError(new NotFoundError("endpoint x is not wired"));
    expect(se.code).toBe(status.NOT_FOUND);
    expect(se.details).toBe("[NKIT_NOT_FOUND] endpoint x is not wired");
    expect(se.metadata.get("nkit-error-code")).toEqual(["NKIT_NOT_FOUND"]);
    const err = Object.assign(new Error("5 NOT_FOUND"), {
      code: status.NOT_FOUND,
      details: se.details,
      metadata: se.metadata,
    });
    expect(fromServiceError(err, "/s")).toMatchObject({
      nkitCode: "NKIT_NOT_FOUND",
      message: "endpoint x is not wired",
      unreachable: false,
    });
    const down = Object.assign(new Error("14"), {
      code: status.UNAVAILABLE,
      details: "connect ENOENT",
      metadata: new Metadata(),
    });
    expect(fromServiceError(down, "/run/nkit/nkit.sock")).toMatchObject({ unreachable: true });
    expect(toServiceError(new Error("boom")).code).toBe(status.INTERNAL);
    // Every "used after close" is one error: NKIT_CLOSED, UNAVAILABLE to API clients, with its cause.
    const closed = new ClosedError("event hub", { cause: new Error("ring buffer freed") });
    expect(closed).toMatchObject({ code: "NKIT_CLOSED", what: "event hub" });
    expect(closed.message).toBe("event hub is closed: ring buffer freed");
    expect(toServiceError(closed).code).toBe(status.UNAVAILABLE);
    // The client's and the CLI's errors are NkitErrors too; what the user reads stays as it was.
    const api = fromServiceError(err, "/s");
    expect(api).toBeInstanceOf(NkitError);
    expect(api.code).toBe("NKIT_API");
    expect(errorText(api)).toBe("endpoint x is not wired [NKIT_NOT_FOUND]");
    const usage = usageError("unknown command frob");
    expect(usage).toBeInstanceOf(NkitError);
    expect(usage).toMatchObject({ code: "NKIT_CLI", name: "CliError" });
    expect(errorText(usage)).toBe("unknown command frob");
    expect(exitCodeOf(usage)).toBe(2);
  });

  it("accepts reason names in several spellings", () => {
    expect(reasonCodeOf("DROP_SPOOFED_SOURCE")).toBe(64);
    expect(reasonCodeOf("spoofed-source")).toBe(64);
    expect(canonicalReason("no_route")).toBe("DROP_NO_ROUTE");
    expect(() => reasonCodeOf("bogus")).toThrow(/unknown reason/);
  });

  it("splits ring buffer batches into records", () => {
    const rec = (n: number, fill: number) => {
      const b = Buffer.alloc(4 + n, fill);
      b.writeUInt32LE(n, 0);
      return b;
    };
    const parts = splitRecords(Buffer.concat([rec(64, 1), rec(3, 2), Buffer.from([9, 9])]));
    expect(parts.map((p) => p.length)).toEqual([64, 3]);
    expect(parts[1]?.[0]).toBe(2);
  });
});

describe("containerd NRI config", () => {
  const v17 = { text: "1.7.24", major: 1, minor: 7 };
  const v20 = { text: "2.0.1", major: 2, minor: 0 };

  it("follows the version default when the file has no NRI section", () => {
    const dir = mkdtempSync(join(tmpdir(), "nkit-ctd-"));
    try {
      const f = join(dir, "config.toml");
      writeFileSync(f, 'version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n');
      expect(nriState(f, v17).enabled).toBe(false);
      expect(nriState(f, v20).enabled).toBe(true);
      expect(nriState(f, undefined).enabled).toBeUndefined();
      expect(nriState(join(dir, "absent.toml"), v20)).toMatchObject({ configExists: false, enabled: true });
      const r = enableNri(f);
      expect(r.changed).toBe(true);
      expect(readFileSync(r.backup!, "utf8")).toBe('version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n');
      expect(nriState(f, v17)).toMatchObject({ section: true, disable: false, enabled: true });
      expect(enableNri(f).changed).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
