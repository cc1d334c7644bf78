// Comments may only point at what a clone of the repository holds: a pointer to the design notes
// kept outside it (the shared reference folder, the design document) or to a test file that does
// not exist leaves a reader with nothing to open.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const FOLDERS = ["src", "native", "bpf", "test", "bench", "scripts"];
const SOURCE = /\.(ts|mts|mjs|js|c|h|sh)$/;
const SKIP = new Set(["node_modules", "build", "dist", "gen", "fixtures"]);
// Written as pieces so this file does not match itself.
const OUTSIDE = [new RegExp(["shared", "reference"].join("/")), new RegExp(`\\b${"DESIGN"}\\.md\\b`)];
const TEST_FILE = /\btest\/[\w./-]+\.test\.ts\b/g;

function sourceFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((name) => {
    if (SKIP.has(name)) return [];
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return sourceFiles(p);
    return SOURCE.test(name) ? [p] : [];
  });
}

/** Comment text of a file, line by line (// and /* *\/ and # for shell), with line numbers. */
function commentLines(file: string): { line: number; text: string }[] {
  const shell = file.endsWith(".sh");
  const out: { line: number; text: string }[] = [];
  let inBlock = false;
  readFileSync(file, "utf8")
    .split("\n")
    .forEach((raw, i) => {
      const l = raw.trim();
      if (shell) {
        if (l.startsWith("#")) out.push({ line: i + 1, text: l });
        return;
      }
      if (inBlock || l.startsWith("/*") || l.startsWith("*")) {
        out.push({ line: i + 1, text: l });
        inBlock = !l.includes("*/") && (inBlock || l.startsWith("/*"));
        return;
      }
      // The first // outside any quote starts the comment (one inside a string is a URL, say).
      for (let at = raw.indexOf("//"); at >= 0; at = raw.indexOf("//", at + 2)) {
        const before = raw.slice(0, at);
        if (['"', "'", "`"].every((q) => before.split(q).length % 2 === 1)) {
          out.push({ line: i + 1, text: raw.slice(at) });
          break;
        }
      }
    });
  return out;
}

const files = FOLDERS.flatMap((f) => sourceFiles(join(ROOT, f)));

describe("comments point inside the repository", () => {
  it("finds the sources it checks", () => {
    expect(files.length).toBeGreaterThan(100);
    expect(files.some((f) => f.endsWith(".c"))).toBe(true);
  });

  it("never at the design notes outside the repository", () => {
    const bad = files.flatMap((f) =>
      commentLines(f)
        .filter((c) => OUTSIDE.some((re) => re.test(c.text)))
        .map((c) => `${relative(ROOT, f)}:${c.line}: ${c.text}`),
    );
    expect(bad, "point at docs/*.md or README.md instead, or drop the pointer").toEqual([]);
  });

  it("never at a test file that does not exist", () => {
    const bad = files.flatMap((f) =>
      commentLines(f).flatMap((c) =>
        [...c.text.matchAll(TEST_FILE)]
          .map((m) => m[0])
          .filter((t) => !existsSync(join(ROOT, t)))
          .map((t) => `${relative(ROOT, f)}:${c.line}: ${t}`),
      ),
    );
    expect(bad).toEqual([]);
  });
});
