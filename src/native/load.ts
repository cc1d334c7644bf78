// Loads the nkit N-API addon once. Each concern declares its own slice of the exports
// (src/native/netns.ts, src/native/netlink.ts, src/native/bpf.ts).
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { NkitError } from "../errors.js";

const require = createRequire(import.meta.url);

function findAddon(): string {
  const override = process.env.NKIT_NATIVE_ADDON;
  if (override) return override;
  // src/native/load.ts and dist/native/load.js both sit two levels below the package root.
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    const candidate = join(dir, "native", "build", "nkit.node");
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new NkitError(
    "NKIT_NATIVE_MISSING",
    "the nkit native addon is not built: run `npm run build:native` (needs libbpf-dev >= 1.4)",
  );
}

let cached: unknown;

/** Returns the raw addon exports; callers cast to their typed slice. */
export function loadAddon(): unknown {
  if (cached === undefined) cached = require(findAddon());
  return cached;
}
