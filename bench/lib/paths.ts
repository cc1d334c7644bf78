// Locations the benchmark needs, found from the repository root whether this file runs from bench/
// (typecheck) or from the compiled copy under bench/dist/.
import { join } from "node:path";
import { REPO_ROOT } from "../../test/helpers/root.js";

export const ROOT = REPO_ROOT;
export const RR_BIN = join(ROOT, "bench", "tools", "build", "rr");
export const TOOLS_DIR = join(ROOT, "bench", "tools");
export const ADDON = join(ROOT, "native", "build", "nkit.node");
export const DATAPATH_OBJ = join(ROOT, "bpf", "build", "datapath.bpf.o");
export const SOCK_LB_OBJ = join(ROOT, "bpf", "build", "sock_lb.bpf.o");
export const RESULTS_DIR = join(ROOT, "bench", "results");
export const README = join(ROOT, "bench", "README.md");
