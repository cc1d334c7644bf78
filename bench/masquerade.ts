// `npm run bench:masquerade`: the masquerade benchmark (bench/lib/masquerade.ts). Runs from the
// compiled copy in bench/dist, so the addon is located explicitly before anything loads it.
import { ADDON } from "./lib/paths.js";

process.env.NKIT_NATIVE_ADDON ??= ADDON;
const { main } = await import("./lib/masquerade.js");
process.exit(await main(process.argv.slice(2)));
