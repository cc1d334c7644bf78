// Whether the installed nkit conflist can work with the installed containerd and CNI plugins: the
// conflist's cniVersion must be one containerd's libcni parses results of, and one every plugin in
// the chain lists in its VERSION answer. A mismatch fails every pod ("unsupported CNI result
// version", "incompatible CNI versions"), so `nkit doctor` says which part refuses which version.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { compareVersions } from "../cni/protocol.js";
import type { ContainerdVersion } from "./containerd.js";

/** Newest CNI spec version whose results containerd's vendored libcni reads. */
function containerdMaxCniVersion(v: ContainerdVersion): string {
  // containerd 1.7 vendors libcni 1.1 (spec up to 1.0.0); 2.0 and later vendor libcni >= 1.2 (1.1.0).
  return v.major >= 2 ? "1.1.0" : "1.0.0";
}

interface NkitConflist {
  path: string;
  cniVersion: string;
  types: string[];
}

/** CNI config files in dir, in the order runtimes load them. */
export function cniConfFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith(".conflist") || f.endsWith(".conf"))
    .sort();
}

/** The first conflist in dir (by name) that chains nkit-cni, if any. */
export function findNkitConflist(dir: string): NkitConflist | undefined {
  for (const f of cniConfFiles(dir)) {
    try {
      const doc = JSON.parse(readFileSync(join(dir, f), "utf8")) as {
        cniVersion?: unknown;
        type?: string;
        plugins?: { type?: string }[];
      };
      const types = (doc.plugins ? doc.plugins.map((p) => p.type) : [doc.type]).filter(
        (t): t is string => typeof t === "string",
      );
      if (types.includes("nkit-cni")) {
        return { path: join(dir, f), cniVersion: String(doc.cniVersion ?? ""), types };
      }
    } catch {
      // not JSON: not ours
    }
  }
  return undefined;
}

/** A plugin's supportedVersions from CNI_COMMAND=VERSION, or why it could not be asked. */
function pluginVersions(bin: string, cniVersion: string): string[] | Error {
  try {
    const out = execFileSync(bin, [], {
      input: JSON.stringify({ cniVersion }),
      env: { CNI_COMMAND: "VERSION", PATH: process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin" },
      encoding: "utf8",
      timeout: 5_000,
      stdio: ["pipe", "pipe", "ignore"],
    });
    const v = (JSON.parse(out) as { supportedVersions?: unknown }).supportedVersions;
    if (!Array.isArray(v)) return new Error(`${bin} VERSION gave no supportedVersions`);
    return v.map(String);
  } catch (e) {
    return new Error(`${bin} VERSION failed: ${(e as Error).message.split("\n")[0]}`);
  }
}

interface CompatVerdict {
  ok: boolean;
  /** One line per part: containerd and each plugin of the chain. */
  parts: string[];
  problems: string[];
}

export function conflistCompat(
  conf: NkitConflist,
  cniBinDir: string,
  containerd: ContainerdVersion | undefined,
): CompatVerdict {
  const parts: string[] = [];
  const problems: string[] = [];
  if (containerd) {
    const max = containerdMaxCniVersion(containerd);
    if (compareVersions(conf.cniVersion, max) > 0) {
      problems.push(`containerd ${containerd.text} reads CNI results up to ${max}`);
    } else parts.push(`containerd ${containerd.text} (up to ${max})`);
  }
  for (const t of conf.types) {
    const bin = join(cniBinDir, t);
    if (!existsSync(bin)) {
      problems.push(`plugin ${t} is not in ${cniBinDir}`);
      continue;
    }
    const v = pluginVersions(bin, conf.cniVersion);
    if (v instanceof Error) problems.push(v.message);
    else if (!v.includes(conf.cniVersion))
      problems.push(`${t} supports ${v.join(", ")}, not ${conf.cniVersion}`);
    else parts.push(`${t} ok`);
  }
  return { ok: problems.length === 0, parts, problems };
}
