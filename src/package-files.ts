// Files of the nkit package, found from the running module: src/ and dist/ sit one level below the
// package root, compiled copies (bench/dist/src) deeper. A checkout's own build (native/build,
// native/cni/build) comes before the prebuilt parts the packages ship in prebuilds/<platform>-<arch>/
// (prebuildify's layout), so a developer's rebuild always wins.
import { existsSync, readFileSync } from "node:fs";
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

/**
 * How nkitd runs: what the `#!/usr/bin/env -S [NAME=VALUE...] node [FLAGS...]` line of its entry
 * sets. That line is the one place nkitd's runtime settings live; /usr/bin/nkitd runs by it, and
 * whatever starts nkitd another way (a unit with this Node, the load benchmark) reads it here.
 */
export interface NkitdLaunch {
  /** The entry (dist/daemon/main.js). */
  script: string;
  /** Environment the line sets (e.g. MALLOC_ARENA_MAX). */
  env: Record<string, string>;
  /** Node's own flags. */
  nodeArgs: string[];
}

export function nkitdLaunch(): NkitdLaunch {
  const script = packageFile(join("dist", "daemon", "main.js"));
  if (!script) throw new Error("dist/daemon/main.js is missing: run `npm run build`");
  return { script, ...parseShebang(readFileSync(script, "utf8").split("\n", 1)[0] ?? "") };
}

/** The environment and node flags of a `#!/usr/bin/env [-S] [NAME=VALUE...] node [FLAGS...]` line. */
export function parseShebang(line: string): Omit<NkitdLaunch, "script"> {
  const m = /^#!\/usr\/bin\/env (?:-S )?(.*)$/.exec(line);
  const words = m?.[1]?.trim().split(/\s+/) ?? [];
  const env: Record<string, string> = {};
  let i = 0;
  for (; i < words.length; i++) {
    const a = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(words[i] ?? "");
    if (!a?.[1]) break;
    env[a[1]] = a[2] ?? "";
  }
  if (words[i] !== "node") throw new Error(`${JSON.stringify(line)} does not run node through /usr/bin/env`);
  return { env, nodeArgs: words.slice(i + 1) };
}
