// Loads the nkit N-API addon once. Each concern declares its own slice of the exports
// (src/native/netns.ts, src/native/netlink.ts, src/native/bpf.ts).
import { createRequire } from "node:module";
import { join } from "node:path";
import { NkitError } from "../errors.js";
import { PREBUILD_DIR, packageFile } from "../package-files.js";

const require = createRequire(import.meta.url);

function findAddon(): string {
  const override = process.env.NKIT_NATIVE_ADDON;
  if (override) return override;
  const found = packageFile(join("native", "build", "nkit.node"), join(PREBUILD_DIR, "nkit.node"));
  if (found) return found;
  throw new NkitError(
    "NKIT_NATIVE_MISSING",
    `the nkit native addon is missing: this package has no ${PREBUILD_DIR}/nkit.node and none is built (run \`npm run build:native\`, needs libbpf-dev >= 1.4)`,
  );
}

/** require() of the addon, with what to install when a shared library it links is missing. */
function requireAddon(path: string): unknown {
  try {
    return require(path);
  } catch (e) {
    const missing = /(lib[\w.+-]+\.so[\w.]*): cannot open shared object file/.exec((e as Error).message)?.[1];
    if (!missing) throw e;
    const pkg = missing.startsWith("libelf")
      ? "libelf1"
      : missing.startsWith("libz")
        ? "zlib1g"
        : missing.startsWith("libbpf")
          ? "libbpf1 (>= 1.4, bookworm-backports)"
          : "the package that provides it";
    throw new NkitError(
      "NKIT_NATIVE_MISSING",
      `the nkit native addon ${path} needs ${missing}: install ${pkg}`,
      {
        cause: e,
      },
    );
  }
}

let cached: unknown;

/** Returns the raw addon exports; callers cast to their typed slice. */
export function loadAddon(): unknown {
  if (cached === undefined) cached = requireAddon(findAddon());
  return cached;
}
