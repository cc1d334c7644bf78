// `npm run bench:cri`: CRI pod start latency with nkit vs the bridge plugin vs a no-op CNI
// (method and numbers: bench/results/cri-latest.md). Runs from the compiled copy in bench/dist; the e2e harness it
// uses loads proto/cri/api.proto relative to itself, so the proto is copied next to the compiled copy.
import { copyHarnessProto } from "./lib/e2e-bench.js";

copyHarnessProto(import.meta.url);
const { main } = await import("./lib/cri.js");
process.exit(await main(process.argv.slice(2)));
