// Files of the nkit package, found from the running module: src/ and dist/ sit one level below the
// package root, compiled copies (bench/dist/src) deeper. A checkout's own build (native/build,
// native/cni/build) comes before the prebuilt parts the packages ship in prebuilds/<platform>-<arch>/
// (prebuildify's layout), so a developer's rebuild always wins.
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** Where the npm and Debian packages put the prebuilt addon and nkit-cni. */
export const PREBUILD_DIR = join("prebuilds", `${process.platform}-${process.arch}`);

/** The first of `rels` (paths relative to the package root) that exists; undefined when none does. */
export function packageFile(...rels: string[]): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    for (const rel of rels) {
      if (existsSync(join(dir, rel))) return join(dir, rel);
    }
    dir = dirname(dir);
  }
  return undefined;
}
