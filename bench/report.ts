// `npm run bench:report`: the performance report (bench/lib/suite-report.ts) from a suite run's JSON
// (--suite FILE) or else from each benchmark's latest results; writes bench/results/report/ and
// refreshes the headline table in README.md. `npm run bench` writes it at the end of a full run.
import { join } from "node:path";
import { parseArgs } from "node:util";
import { RESULTS_DIR, ROOT } from "./lib/paths.js";
import { inputFromLatest, inputFromSuite, refreshReadme, writeReport } from "./lib/suite-report.js";

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: { suite: { type: "string" }, out: { type: "string" }, "no-readme": { type: "boolean" } },
});
const input = values.suite ? inputFromSuite(values.suite) : inputFromLatest(RESULTS_DIR);
const out = values.out ?? join(RESULTS_DIR, "report");
const { headline, charts } = await writeReport(input, out);
process.stdout.write(`${headline.join("\n")}\n`);
process.stderr.write(`report: ${out}/report.{md,html} with ${charts.length} charts\n`);
if (!values["no-readme"] && !values.out) {
  const ok = refreshReadme(join(ROOT, "README.md"), headline, "bench/results/report/report.md");
  process.stderr.write(ok ? "README.md: headline table refreshed\n" : "README.md has no headline markers\n");
}
