// The benchmark suite's pure parts (bench/lib/suite.ts): which benchmarks a command line picks, in
// which order and mode, and the report that gathers their results. Running them is the benchmarks'.
import { describe, expect, it } from "vitest";
import { BENCHMARKS, parseSuiteArgs, SuiteUsage, suiteMarkdown } from "../../bench/lib/suite.js";

const names = (argv: string[]) => parseSuiteArgs(argv).only.map((b) => b.name);

describe("npm run bench", () => {
  it("runs every benchmark by default, and --only picks some in the suite's order", () => {
    expect(names([])).toEqual(["datapath", "wiring", "cri", "churn", "services", "masq", "memory", "vm"]);
    expect(names(["--only", "memory, services"])).toEqual(["services", "memory"]);
    expect(parseSuiteArgs(["--quick", "--only", "masq"]).quick).toBe(true);
    expect(parseSuiteArgs([]).quick).toBe(false);
  });

  it("refuses an unknown benchmark naming it and listing the known ones", () => {
    expect(() => parseSuiteArgs(["--only", "services,churnn"])).toThrow(SuiteUsage);
    expect(() => parseSuiteArgs(["--only", "services,churnn"])).toThrow(
      /unknown benchmark churnn[\s\S]*memory/,
    );
    expect(() => parseSuiteArgs(["--only", ","])).toThrow(/at least one/);
  });

  it("--quick gives each benchmark its short form", () => {
    for (const b of BENCHMARKS) {
      const full = b.command(false, "/r");
      const quick = b.command(true, "/r");
      expect(JSON.stringify(full)).toContain("/r");
      expect([b.name, JSON.stringify(quick)]).not.toEqual([b.name, JSON.stringify(full)]);
    }
  });

  it("reports each benchmark's status and time, then each one's own report under its name", () => {
    const md = suiteMarkdown(new Date("2026-12-07T22:00:00Z"), true, [
      { name: "services", ok: true, exitCode: 0, seconds: 61.4, markdown: "# nkit services benchmark\n\nx" },
      { name: "masq", ok: false, exitCode: 1, seconds: 3, missing: "no fresh masquerade results" },
    ]);
    expect(md).toContain("2 benchmarks in 64 s");
    expect(md).toContain("| services | ok | 61 |");
    expect(md).toContain("| masq | FAILED (exit 1; no fresh masquerade results) | 3 |");
    expect(md).toContain("# services: nkit services benchmark");
    expect(md).toContain("npm run bench -- --quick");
  });
});
