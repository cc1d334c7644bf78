// Enforces the layering rule of test/unit/layers.ts on the real import graph of src/: the import
// and export specifiers of every src/**/*.ts file (static, type-only and dynamic imports alike,
// parsed by the TypeScript compiler's pre-processor). Also keeps docs/architecture.md describing
// every folder the rule and the repository have.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";
import { LAYERS, type Layer, OWNED_PACKAGES, ROOT_MODULES } from "./layers.js";

const ROOT = resolve(import.meta.dirname, "..", "..");
const SRC = join(ROOT, "src");
const RULE_FILE = "test/unit/layers.ts";

interface SourceFile {
  /** Path relative to the repository root, with forward slashes. */
  path: string;
  imports: string[];
}

function walk(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith(".ts")) out.push(p);
  }
  return out;
}

function importsOf(text: string): string[] {
  const info = ts.preProcessFile(text, true, true);
  return info.importedFiles.map((f) => f.fileName);
}

function readSources(): SourceFile[] {
  return walk(SRC).map((abs) => ({
    path: relative(ROOT, abs).split(sep).join("/"),
    imports: importsOf(readFileSync(abs, "utf8")),
  }));
}

/** "api" for src/api/..., "errors.ts" for src/errors.ts; undefined outside src/. */
function unitOf(pathInRepo: string): string | undefined {
  if (!pathInRepo.startsWith("src/")) return undefined;
  return pathInRepo.slice("src/".length).split("/")[0];
}

function packageOf(spec: string): string {
  const parts = spec.split("/");
  return spec.startsWith("@") ? parts.slice(0, 2).join("/") : (parts[0] ?? spec);
}

const addRow = (folder: string) =>
  `add a row { folder: "${folder}", mayImport: [...] } to LAYERS in ${RULE_FILE} (and give the folders ` +
  `that use it "${folder}" in their mayImport), and describe src/${folder}/ in docs/architecture.md`;

/** Every breach of the rule, one message per offending file and import. */
function violations(
  files: readonly SourceFile[],
  layers: readonly Layer[] = LAYERS,
  rootModules: readonly string[] = ROOT_MODULES,
  ownedPackages: Readonly<Record<string, readonly string[]>> = OWNED_PACKAGES,
): string[] {
  const rules = new Map(layers.map((l) => [l.folder, l]));
  const isRoot = (u: string) => u.endsWith(".ts") && !u.includes("/");
  const out: string[] = [];
  const known = (file: string, unit: string): boolean => {
    if (isRoot(unit) ? rootModules.includes(unit) : rules.has(unit)) return true;
    out.push(
      isRoot(unit)
        ? `${file}: src/${unit} is not a known root module: add it to ROOT_MODULES in ${RULE_FILE} or move it into a folder`
        : `${file}: folder src/${unit}/ is not in the layering rule: ${addRow(unit)}`,
    );
    return false;
  };
  for (const f of files) {
    const from = unitOf(f.path);
    if (from === undefined || !known(f.path, from)) continue;
    for (const spec of f.imports) {
      if (spec.startsWith("node:")) continue;
      if (!spec.startsWith(".")) {
        const owners = ownedPackages[packageOf(spec)];
        if (owners !== undefined && !owners.includes(from)) {
          const where = owners.map((o) => `src/${o}/`).join(" or ");
          out.push(
            `${f.path} imports "${spec}": only ${where} may use ${packageOf(spec)}; go through ${where}`,
          );
        }
        continue;
      }
      const target = relative(ROOT, resolve(ROOT, dirname(f.path), spec.replace(/\.js$/, ".ts")))
        .split(sep)
        .join("/");
      const to = unitOf(target);
      if (to === undefined) {
        out.push(`${f.path} imports "${spec}": src/ must not import from outside src/ (${target})`);
        continue;
      }
      if (to === from || !known(`${f.path} imports "${spec}"`, to)) continue;
      if (isRoot(to)) continue;
      if (isRoot(from)) {
        out.push(
          `${f.path} imports "${spec}": root modules (${rootModules.join(", ")}) import only each other`,
        );
        continue;
      }
      const allowed = rules.get(from)?.mayImport ?? [];
      if (!allowed.includes(to)) {
        out.push(
          `${f.path} imports "${spec}" (src/${to}/): src/${from}/ may import only ` +
            `${allowed.length ? allowed.map((a) => `src/${a}/`).join(", ") : "the root modules"} (${RULE_FILE})`,
        );
      }
    }
  }
  return out;
}

describe("layering rule", () => {
  const files = readSources();

  it("reads the real import graph", () => {
    expect(files.length).toBeGreaterThan(50);
    const server = files.find((f) => f.path === "src/api/server.ts");
    expect(server?.imports).toContain("../datapath/reasons.js");
  });

  it("holds for every import of src/", () => {
    expect(violations(files)).toEqual([]);
  });

  it("only src/bpf, src/netlink, src/process and src/systemd import src/native", () => {
    const users = new Set(
      files
        .filter((f) => !f.path.startsWith("src/native/") && f.imports.some((s) => /(^|\/)native\//.test(s)))
        .map((f) => unitOf(f.path)),
    );
    expect([...users].sort()).toEqual(["bpf", "netlink", "process", "systemd"]);
  });

  it("is a stack: a row names only rows above it, every row is a folder of src/", () => {
    const seen = new Set<string>();
    for (const l of LAYERS) {
      for (const dep of l.mayImport)
        expect(seen.has(dep), `${l.folder} -> ${dep} must be listed above it`).toBe(true);
      seen.add(l.folder);
    }
    const folders = readdirSync(SRC).filter((n) => statSync(join(SRC, n)).isDirectory());
    for (const l of LAYERS)
      expect(folders, `src/${l.folder}/ does not exist: drop its row`).toContain(l.folder);
    for (const m of ROOT_MODULES) expect(readdirSync(SRC)).toContain(m);
  });

  it("names the offending file and import, and an unknown folder", () => {
    const v = violations([
      { path: "src/api/maps.ts", imports: ["../native/bpf.js", "../datapath/reasons.js", "node:fs"] },
      { path: "src/metrics/collectors.ts", imports: ["../api/maps.js"] },
      { path: "src/frobs/frob.ts", imports: ["../bpf/map.js"] },
      { path: "src/datapath/x.ts", imports: ["../frobs/frob.js"] },
      { path: "src/errors.ts", imports: ["./util/ip.js"] },
      { path: "src/cli/x.ts", imports: ["netlink/dist/structs.js", "../../bpf/build/x.js"] },
    ]);
    expect(v).toEqual([
      'src/api/maps.ts imports "../native/bpf.js" (src/native/): src/api/ may import only src/bpf/, src/datapath/, src/ipam/, src/pods/, src/masquerade/, src/metrics/, src/services/ (test/unit/layers.ts)',
      'src/metrics/collectors.ts imports "../api/maps.js" (src/api/): src/metrics/ may import only src/datapath/ (test/unit/layers.ts)',
      `src/frobs/frob.ts: folder src/frobs/ is not in the layering rule: ${addRow("frobs")}`,
      `src/datapath/x.ts imports "../frobs/frob.js": folder src/frobs/ is not in the layering rule: ${addRow("frobs")}`,
      'src/errors.ts imports "./util/ip.js": root modules (errors.ts, log.ts, package-files.ts, version.ts) import only each other',
      'src/cli/x.ts imports "netlink/dist/structs.js": only src/netlink/ may use netlink; go through src/netlink/',
      'src/cli/x.ts imports "../../bpf/build/x.js": src/ must not import from outside src/ (bpf/build/x.ts)',
    ]);
  });
});

describe("docs/architecture.md", () => {
  const doc = readFileSync(join(ROOT, "docs", "architecture.md"), "utf8");
  const undocumented = (dirs: string[]) => dirs.filter((d) => !doc.includes(d));

  it("describes every layer of the rule", () => {
    expect(undocumented(LAYERS.map((l) => `src/${l.folder}/`))).toEqual([]);
  });

  it("describes every folder of native/, bpf/, bench/ and test/", () => {
    const dirs = ["native", "bpf", "bench", "test"].flatMap((top) =>
      readdirSync(join(ROOT, top))
        .filter((n) => !["build", "build-static", "dist", "node_modules"].includes(n))
        .filter((n) => statSync(join(ROOT, top, n)).isDirectory())
        .map((n) => `${top}/${n}/`),
    );
    expect(dirs.length).toBeGreaterThan(10);
    expect(undocumented(dirs)).toEqual([]);
  });
});
