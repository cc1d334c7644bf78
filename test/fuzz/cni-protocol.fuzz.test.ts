// nkitd's CNI endpoint under fuzzing: every request line nkit-cni could send (any text, any JSON,
// every one-field mutation of a real ADD from containerd 1.7 and 2.x carrying its network config)
// is parsed into a request or refused with a CniError, whose CNI code the shim prints as it is.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { CniError } from "../../src/cni/codes.js";
import { parseCniArgs, parseRequest } from "../../src/cni/protocol.js";
import { acceptsOrRefuses, jsonish, mutated, params } from "./fuzz.js";

const FIXTURES = join(import.meta.dirname, "..", "fixtures", "cni");
const captured = ["containerd-1.7.24-add.json", "containerd-2.4.2-add.json"].map((f) => {
  const conf = JSON.parse(readFileSync(join(FIXTURES, f), "utf8")) as Record<string, unknown>;
  return {
    v: 1,
    command: "ADD",
    containerId: "0123456789abcdef",
    netns: "/var/run/netns/cni-1234",
    ifName: "eth0",
    args: "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web",
    path: "/opt/cni/bin",
    config: { ...conf, type: "nkit-cni", mode: "wire", socket: "/run/nkit/cni.sock" },
  };
});

const answered = (line: string) => {
  try {
    parseRequest(line);
  } catch (e) {
    if (!(e instanceof CniError)) throw e;
    expect(Number.isInteger(e.cniCode)).toBe(true);
  }
  return acceptsOrRefuses(() => parseRequest(line));
};

describe("CNI endpoint requests (fuzz)", () => {
  it("parses the captured ADDs", () => {
    for (const r of captured) expect(parseRequest(JSON.stringify(r)).command).toBe("ADD");
  });

  it("answers any line with a request or a CniError", () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string({ unit: "binary" })), (l) => void answered(l)),
      params(),
    );
  });

  it("answers any JSON value and every one-field mutation of a captured ADD", () => {
    const line = fc
      .oneof(jsonish, mutated(captured[0]), mutated(captured[1]))
      .map((v) => JSON.stringify(v) ?? "null");
    fc.assert(
      fc.property(line, (l) => void answered(l)),
      params(),
    );
  });

  it("parses any CNI_ARGS text into labels and addresses, or refuses it with a CniError", () => {
    const text = fc.oneof(
      fc.string(),
      fc
        .array(fc.tuple(fc.string({ maxLength: 8 }), fc.string({ maxLength: 12 })), { maxLength: 5 })
        .map((kv) => kv.map(([k, v]) => `${k}=${v}`).join(";")),
    );
    fc.assert(
      fc.property(text, (t) => void acceptsOrRefuses(() => parseCniArgs(t))),
      params(),
    );
  });
});
