// `npm run bench:nerdctl`: nerdctl container start to first TCP connect, nkit vs nerdctl's bridge network
// (method and numbers: bench/results/nerdctl-latest.md). Runs from the compiled copy in bench/dist; the
// e2e harness it uses loads proto/cri/api.proto relative to itself, so the proto is copied next to it.
import { copyFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { ROOT } from "./lib/paths.js";

const here = dirname(fileURLToPath(import.meta.url));
if (here.endsWith(join("bench", "dist", "bench"))) {
  const dest = join(here, "..", "proto", "cri");
  mkdirSync(dest, { recursive: true });
  copyFileSync(join(ROOT, "proto", "cri", "api.proto"), join(dest, "api.proto"));
}
const { main } = await import("./lib/nerdctl.js");
process.exit(await main(process.argv.slice(2)));
