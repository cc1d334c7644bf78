// `npm run bench:nerdctl`: nerdctl container start to first TCP connect, nkit vs nerdctl's bridge network
// (method and numbers: bench/results/nerdctl-latest.md). Runs from the compiled copy in bench/dist; the
// e2e harness it uses loads proto/cri/api.proto relative to itself, so the proto is copied next to it.
import { copyHarnessProto } from "./lib/e2e-bench.js";

copyHarnessProto(import.meta.url);
const { main } = await import("./lib/nerdctl.js");
process.exit(await main(process.argv.slice(2)));
