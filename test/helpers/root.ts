// The repository root, found upwards from this file: the helpers also run compiled, from bench/dist/.
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";

function findRoot(): string {
  let dir = import.meta.dirname;
  for (;;) {
    const pkg = join(dir, "package.json");
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, "utf8")) as { name?: string }).name === "nkit") {
      return dir;
    }
    const up = dirname(dir);
    if (up === dir) throw new Error("cannot find the nkit repository root above the test helpers");
    dir = up;
  }
}

export const REPO_ROOT = findRoot();
