// Bundles nkitd and the nkit CLI into their entry files (dist/daemon/main.js, dist/cli/main.js,
// replaced in place, so every path users and tests run stays the same), minified, instead of ~450
// modules; the CLI split by command (its chunks in dist/cli/chunks/). nkitd is a long-running
// process and every module it loads stays in its heap (source text, scopes, module records):
// bundled it idles at ~6 MiB less RSS; the CLI starts ~10 % faster (bench/README.md, Memory and
// `nkit service add`). The other dist/ modules stay as tsc wrote them for tests and benchmarks that
// import them one by one.
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

const common = {
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
};

await Promise.all([
  // nkitd loads everything it has at start: one file.
  build({ ...common, entryPoints: ["dist/daemon/main.js"], outfile: "dist/daemon/main.js" }),
  // The CLI loads a command's modules when that command runs (main.ts imports them dynamically):
  // split, each of those is a chunk of its own (dist/cli/chunks/), parsed only when imported.
  build({
    ...common,
    entryPoints: ["dist/cli/main.js"],
    outdir: "dist/cli",
    splitting: true,
    chunkNames: "chunks/[name]-[hash]",
  }),
]);
