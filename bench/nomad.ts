// `npm run bench:nomad`: Nomad allocation start to first TCP connect and CNI ADD time, cni/nkit vs
// Nomad's bridge mode (method and numbers: bench/results/nomad-latest.md).
import { copyHarnessProto } from "./lib/e2e-bench.js";

copyHarnessProto(import.meta.url);
const { main } = await import("./lib/nomad.js");
process.exit(await main(process.argv.slice(2)));
