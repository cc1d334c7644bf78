import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { hostIfName, isHostIfName } from "../../src/datapath/naming.js";
import { isDrop, Reason, reasonName } from "../../src/datapath/reasons.js";

describe("datapath reasons", () => {
  it("mirror enum nk_reason of the datapath header exactly", () => {
    const header = readFileSync(new URL("../../bpf/include/nkit_datapath.h", import.meta.url), "utf8");
    const enumBody = /enum nk_reason \{([\s\S]*?)\};/.exec(header)?.[1] ?? "";
    const fromC = Object.fromEntries(
      [...enumBody.matchAll(/NK_(?:FWD_)?(\w+) = (\d+)/g)].map((m) => [m[1], Number(m[2])]),
    );
    expect(Object.keys(fromC).length).toBeGreaterThan(5);
    expect(fromC).toEqual(Reason);
  });

  it("names codes and separates drops from forwards", () => {
    expect(reasonName(Reason.DROP_SPOOFED_SOURCE)).toBe("DROP_SPOOFED_SOURCE");
    expect(reasonName(999)).toBe("UNKNOWN_999");
    expect(isDrop(Reason.REDIRECT_PEER)).toBe(false);
    expect(isDrop(Reason.DROP_NO_ROUTE)).toBe(true);
  });
});

describe("host interface naming", () => {
  it("is nk + 11 hex chars of sha256(id), stable and within IFNAMSIZ", () => {
    const name = hostIfName("4f1c0ffee");
    expect(name).toMatch(/^nk[0-9a-f]{11}$/);
    expect(name).toBe(hostIfName("4f1c0ffee"));
    expect(name).not.toBe(hostIfName("4f1c0ffef"));
    // sha256("abc") = ba7816bf8f01cfea...
    expect(hostIfName("abc")).toBe("nkba7816bf8f0");
    expect(isHostIfName(name)).toBe(true);
    expect(isHostIfName("eth0")).toBe(false);
  });
});
