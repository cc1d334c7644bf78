// containerd facts for `nkit doctor` and `nkit install`: version, and whether NRI is enabled by its
// config file. NRI lives in [plugins."io.containerd.nri.v1.nri"]; `disable` defaults to true on
// containerd 1.7 and to false from 2.0.
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";

export const NRI_SECTION = '[plugins."io.containerd.nri.v1.nri"]';

export interface ContainerdVersion {
  text: string;
  major: number;
  minor: number;
}

export function containerdVersion(bin = "containerd"): ContainerdVersion | undefined {
  let out: string;
  try {
    out = execFileSync(bin, ["--version"], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    });
  } catch {
    return undefined;
  }
  const m = /\bv?(\d+)\.(\d+)\.(\d+)/.exec(out);
  if (!m) return undefined;
  return { text: `${m[1]}.${m[2]}.${m[3]}`, major: Number(m[1]), minor: Number(m[2]) };
}

interface NriState {
  configPath: string;
  configExists: boolean;
  /** The section is present in the file. */
  section: boolean;
  /** `disable = ...` inside the section, when given. */
  disable: boolean | undefined;
  /** Effective state, given the version's default (undefined when the version is unknown). */
  enabled: boolean | undefined;
  /** Why, in one line. */
  detail: string;
}

interface SectionSpan {
  start: number; // index of the header line
  end: number; // index of the first line after the section
}

function findSection(lines: string[]): SectionSpan | undefined {
  const start = lines.findIndex((l) => l.trim() === NRI_SECTION);
  if (start < 0) return undefined;
  let end = start + 1;
  while (end < lines.length && !/^\s*\[/.test(lines[end] ?? "")) end++;
  return { start, end };
}

export function nriState(configPath: string, version: ContainerdVersion | undefined): NriState {
  const exists = existsSync(configPath);
  const lines = exists ? readFileSync(configPath, "utf8").split("\n") : [];
  const span = findSection(lines);
  let disable: boolean | undefined;
  if (span) {
    for (const l of lines.slice(span.start + 1, span.end)) {
      const m = /^\s*disable\s*=\s*(true|false)\s*(#.*)?$/.exec(l);
      if (m) disable = m[1] === "true";
    }
  }
  const defaultDisabled = version ? version.major < 2 : undefined;
  const effectiveDisabled = disable ?? defaultDisabled;
  const enabled = effectiveDisabled === undefined ? undefined : !effectiveDisabled;
  let detail: string;
  if (disable !== undefined) detail = `${configPath} sets disable = ${disable} in ${NRI_SECTION}`;
  else if (!exists)
    detail = `${configPath} does not exist: containerd ${version?.text ?? "(version unknown)"} defaults apply`;
  else
    detail = `${configPath} has no NRI setting: containerd ${version?.text ?? "(version unknown)"} defaults apply`;
  return { configPath, configExists: exists, section: span !== undefined, disable, enabled, detail };
}

/**
 * Enables NRI in the config file: sets `disable = false` in the NRI section (adding the section when
 * missing). Writes a backup of an existing file first; returns its path.
 */
export function enableNri(configPath: string): { backup: string | undefined; changed: boolean } {
  const exists = existsSync(configPath);
  const text = exists ? readFileSync(configPath, "utf8") : "version = 2\n";
  const lines = text.split("\n");
  const span = findSection(lines);
  let next: string[];
  if (span) {
    const body = lines.slice(span.start + 1, span.end);
    const i = body.findIndex((l) => /^\s*disable\s*=/.test(l));
    if (i >= 0 && /^\s*disable\s*=\s*false\s*(#.*)?$/.test(body[i] ?? ""))
      return { backup: undefined, changed: false };
    const indent = /^(\s*)/.exec(lines[span.start] ?? "")?.[1] ?? "";
    if (i >= 0) body[i] = `${indent}  disable = false`;
    else body.unshift(`${indent}  disable = false`);
    next = [...lines.slice(0, span.start + 1), ...body, ...lines.slice(span.end)];
  } else {
    const trimmed = text.endsWith("\n") ? lines.slice(0, -1) : lines;
    next = [
      ...trimmed,
      "",
      "# Added by `nkit install --patch-containerd`: nkitd is an NRI plugin.",
      NRI_SECTION,
      "  disable = false",
      "",
    ];
  }
  let backup: string | undefined;
  if (exists) {
    backup = `${configPath}.nkit-backup-${new Date().toISOString().replace(/[:.]/g, "-")}`;
    copyFileSync(configPath, backup);
  }
  writeFileSync(configPath, next.join("\n"), { mode: 0o644 });
  return { backup, changed: true };
}
