// `npm run bench`: the endpoint datapath benchmark (bench/README.md). Runs from the compiled copy in
// bench/dist, so the addon is located explicitly before anything loads it.
import { ADDON } from "./lib/paths.js";

process.env.NKIT_NATIVE_ADDON ??= ADDON;
const { main } = await import("./lib/run.js");
process.exit(await main(process.argv.slice(2)));
