// How nkitd runs: the environment and node flags of its #! line, read by whatever starts it
// another way than /usr/bin/nkitd (nkit install's unit with this Node, the load benchmark).
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parseShebang } from "../../src/package-files.js";

describe("parseShebang", () => {
  it("reads nkitd's own line: one malloc arena, V8's memory flags", () => {
    const line = readFileSync(new URL("../../src/daemon/main.ts", import.meta.url), "utf8").split("\n", 1)[0];
    expect(parseShebang(line ?? "")).toEqual({
      env: { MALLOC_ARENA_MAX: "1" },
      nodeArgs: ["--max-semi-space-size=1", "--optimize-for-size"],
    });
  });

  it("reads lines without -S, environment or flags", () => {
    expect(parseShebang("#!/usr/bin/env node")).toEqual({ env: {}, nodeArgs: [] });
    expect(parseShebang("#!/usr/bin/env -S A=1 B= node --x")).toEqual({
      env: { A: "1", B: "" },
      nodeArgs: ["--x"],
    });
  });

  it("refuses a line that does not run node through env", () => {
    expect(() => parseShebang("#!/bin/sh")).toThrow(/does not run node/);
    expect(() => parseShebang("#!/usr/bin/env -S A=1 python3")).toThrow(/does not run node/);
  });
});
