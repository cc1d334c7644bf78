// The performance report (bench/lib/suite-report.ts, charts.ts) built from the results committed in
// bench/results: every SVG parses as XML, and each chart carries the numbers of the JSON it came
// from (read here straight from the JSON, as Vega writes them into its marks' aria-labels).
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { XMLParser, XMLValidator } from "fast-xml-parser";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RESULTS_DIR } from "../../bench/lib/paths.js";
import { round } from "../../bench/lib/stats.js";
import {
  explainMisses,
  type Headline,
  inputFromLatest,
  refreshReadme,
  writeReport,
} from "../../bench/lib/suite-report.js";

let dir: string;
let charts: string[];
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "nkit-report-"));
  charts = (await writeReport(inputFromLatest(RESULTS_DIR), dir)).charts.map((c) => c.id);
}, 60_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const json = <T>(name: string): T => JSON.parse(readFileSync(join(RESULTS_DIR, name), "utf8")) as T;
const svgOf = (id: string): string => readFileSync(join(dir, `${id}.svg`), "utf8");

/** Every aria-label in a parsed SVG: Vega gives each mark one listing its fields and values. */
function ariaLabels(svg: string): string[] {
  const doc = new XMLParser({ ignoreAttributes: false, attributeNamePrefix: "@_" }).parse(svg) as unknown;
  const out: string[] = [];
  const walk = (n: unknown): void => {
    if (Array.isArray(n)) for (const x of n) walk(x);
    else if (n && typeof n === "object") {
      for (const [k, v] of Object.entries(n)) {
        if (k === "@_aria-label" && typeof v === "string") out.push(v);
        else walk(v);
      }
    }
  };
  walk(doc);
  return out;
}

/** Whether one mark's label has all these `field: value` parts. */
const hasMark = (svg: string, parts: readonly string[]): boolean =>
  ariaLabels(svg).some((l) => parts.every((p) => l.split("; ").includes(p)));

describe("performance report", () => {
  it("writes a parseable SVG per chart, the Markdown report and a one-page HTML with them inline", () => {
    const files = readdirSync(dir);
    expect(charts.length).toBeGreaterThanOrEqual(10);
    for (const id of charts) {
      expect(files).toContain(`${id}.svg`);
      expect(XMLValidator.validate(svgOf(id))).toBe(true);
      expect(ariaLabels(svgOf(id)).length).toBeGreaterThan(0);
    }
    const md = readFileSync(join(dir, "report.md"), "utf8");
    const html = readFileSync(join(dir, "report.html"), "utf8");
    for (const id of charts) {
      expect(md).toContain(`](${id}.svg)`);
      expect(html).toContain(`<section id="${id}">`);
    }
    expect((html.match(/<svg /g) ?? []).length).toBe(charts.length);
  });

  it("draws the datapath's medians per path and test", () => {
    const d = json<{ summary: { key: string; metrics: Record<string, { median: number }> }[] }>(
      "datapath-latest.json",
    );
    for (const p of d.summary) {
      const rr = p.metrics.rr_p50?.median as number;
      expect(
        hasMark(svgOf("datapath-latency"), [`path: ${p.key}`, "percentile: p50", `latency µs: ${round(rr)}`]),
      ).toBe(true);
      const gbps = p.metrics.stream_gbps?.median as number;
      expect(hasMark(svgOf("datapath-throughput"), [`path: ${p.key}`, `value: ${round(gbps)}`])).toBe(true);
    }
  });

  it("draws every wiring sample, the service scale, churn, memory and the VM lane's ratios", () => {
    const d = json<{ wiring: { raw: { wire: number[] } } }>("wiring-latest.json");
    const wire = d.wiring.raw.wire;
    for (const v of [Math.min(...wire), Math.max(...wire)]) {
      expect(hasMark(svgOf("wiring-distribution"), ["operation: wire (veth)", `ms: ${round(v)}`])).toBe(true);
    }
    const s = json<{ rows: { path: string; services: number; test: string; rate: number }[] }>(
      "services-latest.json",
    );
    const crr10k = s.rows.find((r) => r.path === "nkit-vip" && r.services === 10000 && r.test === "crr");
    expect(crr10k).toBeDefined();
    expect(
      hasMark(svgOf("services-scale"), [
        "path: nkit-vip",
        "services: 10000",
        `value: ${round(crr10k?.rate as number)}`,
      ]),
    ).toBe(true);
    const c = json<{ summary: { nkit: { createPerS: number } } }>("churn-latest.json");
    expect(
      hasMark(svgOf("churn"), ["variant: nkit", `pods per s: ${round(c.summary.nkit.createPerS)}`]),
    ).toBe(true);
    const l = json<{ nkitd: { rssAtBothMiB: number } }>("load-latest.json");
    expect(hasMark(svgOf("memory"), [`RSS MiB: ${round(l.nkitd.rssAtBothMiB)}`])).toBe(true);
    const v = json<{ ratios: { netkit_vs_veth: { rr_p50: number } } }>("vm-latest.json");
    expect(hasMark(svgOf("vm-ratios"), [`netkit / veth: ${round(v.ratios.netkit_vs_veth.rr_p50)}`])).toBe(
      true,
    );
  });

  it("shows every issue target it reports as met or missed, and refreshes README's headline between its markers", () => {
    const md = readFileSync(join(dir, "report.md"), "utf8");
    const d = json<{ targets: { id: string; shown: string; verdict: string }[] }>("datapath-latest.json");
    const rr = d.targets.find((t) => t.id === "rr_p50");
    expect(md).toMatch(
      new RegExp(`\\| ${rr?.shown.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} \\|[^\n]*\\| (met|missed) \\|`),
    );
    const readme = join(dir, "README.md");
    writeFileSync(readme, "# x\n\n<!-- bench-headline:start -->\nold\n<!-- bench-headline:end -->\n\nrest\n");
    expect(refreshReadme(readme, ["| a | b |"], "r.md")).toBe(true);
    const text = readFileSync(readme, "utf8");
    expect(text).toContain("| a | b |");
    expect(text).not.toContain("old");
    expect(text).toMatch(/rest\n$/);
    writeFileSync(readme, "# no markers\n");
    expect(refreshReadme(readme, ["| a |"], "r.md")).toBe(false);
  });

  it("gives every missed target its known cause, and a met one none", () => {
    const md = readFileSync(join(dir, "report.md"), "utf8");
    const missed = md.split("\n").filter((l) => / \| missed \| /.test(l));
    expect(missed.length).toBeGreaterThan(0);
    for (const line of missed) expect(line).toMatch(/\| missed \| \S[^|]* \|$/);
    const row = (what: string, verdict: Headline["verdict"]): Headline => ({
      what,
      value: "1",
      goal: "",
      verdict,
      source: "cri",
    });
    const reasons = [{ source: "cri" as const, match: "CNI ADD\\+DEL", reason: "spawns" }];
    const [a, b, c] = explainMisses(
      [row("CNI ADD+DEL p50", "missed"), row("CNI ADD+DEL p50", "met"), row("RunPodSandbox", "missed")],
      reasons,
    );
    expect(a?.why).toBe("spawns");
    expect(b?.why).toBeUndefined();
    expect(c?.why).toBeUndefined();
  });
});
