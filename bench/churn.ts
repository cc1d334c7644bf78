// `npm run bench:churn`: pods created and removed through CRI, nkit vs the bridge plugin, and what
// nkit keeps of them (bench/lib/churn.ts). Runs from the compiled copy in bench/dist; the e2e harness
// loads proto/cri/api.proto relative to itself, so the proto is copied next to the compiled copy.
import { copyHarnessProto } from "./lib/e2e-bench.js";

copyHarnessProto(import.meta.url);
const { main } = await import("./lib/churn.js");
process.exit(await main(process.argv.slice(2)));
