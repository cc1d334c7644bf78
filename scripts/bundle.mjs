// Bundles nkitd and the nkit CLI, each into its own entry file (dist/daemon/main.js,
// dist/cli/main.js, replaced in place, so every path users and tests run stays the same): one
// minified file instead of ~450 modules. nkitd is a long-running process and every module it
// loads stays in its heap (source text, scopes, module records): bundled it idles at ~6 MiB less
// RSS, and both start faster (bench/README.md, Memory). The other dist/ modules stay as tsc wrote
// them for tests and benchmarks that import them one by one.
//
// Left outside the bundle: native addons (found at run time from the package root) and
// pino-pretty, which log.ts loads only for a terminal.
import { readFileSync } from "node:fs";
import { build } from "esbuild";

const ENTRIES = ["dist/daemon/main.js", "dist/cli/main.js"];
const BANNER =
  'import { createRequire as __nkitRequire } from "node:module"; const require = __nkitRequire(import.meta.url);';

for (const entry of ENTRIES) {
  if (readFileSync(entry, "utf8").includes(BANNER)) {
    throw new Error(`${entry} is a bundle already: run tsc -p tsconfig.build.json first (npm run build:ts)`);
  }
}

await Promise.all(
  ENTRIES.map((entry) =>
    build({
      entryPoints: [entry],
      outfile: entry,
      allowOverwrite: true,
      bundle: true,
      platform: "node",
      target: "node20",
      format: "esm",
      minify: true,
      // Error classes and functions keep their names: logs name an error's class (`err.type`).
      keepNames: true,
      sourcemap: "linked",
      external: ["*.node", "pino-pretty"],
      // CommonJS dependencies call require(); an ES module has none of its own.
      banner: { js: BANNER },
      logLevel: "warning",
    }),
  ),
);
