// Locations the benchmark needs, found from the repository root whether this file runs from bench/
// (typecheck) or from the compiled copy under bench/dist/.
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, "package.json");
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, "utf8")) as { name?: string }).name === "nkit") {
      return dir;
    }
    const up = dirname(dir);
    if (up === dir) throw new Error("cannot find the nkit repository root above the benchmark");
    dir = up;
  }
}

export const ROOT = findRoot();
export const RR_BIN = join(ROOT, "bench", "tools", "build", "rr");
export const TOOLS_DIR = join(ROOT, "bench", "tools");
export const ADDON = join(ROOT, "native", "build", "nkit.node");
export const DATAPATH_OBJ = join(ROOT, "bpf", "build", "datapath.bpf.o");
export const SOCK_LB_OBJ = join(ROOT, "bpf", "build", "sock_lb.bpf.o");
export const RESULTS_DIR = join(ROOT, "bench", "results");
export const README = join(ROOT, "bench", "README.md");
