// `npm run bench`: every benchmark, one after the other (bench/lib/suite.ts). Runs from the
// compiled copy in bench/dist.
import { main } from "./lib/suite.js";

process.exit(await main(process.argv.slice(2)));
