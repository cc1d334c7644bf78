// `npm run bench:load`: nkitd under load (bench/lib/load.ts). Runs from the compiled copy in
// bench/dist, so the addon is located explicitly before anything loads it.
import { ADDON } from "./lib/paths.js";

process.env.NKIT_NATIVE_ADDON ??= ADDON;
const { main } = await import("./lib/load.js");
process.exit(await main(process.argv.slice(2)));
