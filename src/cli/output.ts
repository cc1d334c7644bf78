// CLI output and exit codes. Exit codes (documented in docs/operations.md):
//   0 ok · 1 failure · 2 usage error · 3 nkitd unreachable · 4 `nkit doctor` found failures
import { ApiError } from "../api/errors.js";
import { NkitError } from "../errors.js";

import { EXIT } from "./exit.js";

export { EXIT };

/** An error with a chosen exit code; its message is all the user sees. */
export class CliError extends NkitError {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super("NKIT_CLI", message);
  }
}

export function usageError(message: string): CliError {
  return new CliError(message, EXIT.USAGE);
}

export function exitCodeOf(e: unknown): number {
  if (e instanceof CliError) return e.exitCode;
  if (e instanceof ApiError) return e.unreachable ? EXIT.UNREACHABLE : EXIT.FAILURE;
  return EXIT.FAILURE;
}

export function errorText(e: unknown): string {
  if (e instanceof ApiError) return e.unreachable ? e.message : `${e.message} [${e.nkitCode}]`;
  if (e instanceof CliError) return e.message;
  if (e instanceof NkitError) return `${e.message} [${e.code}]`;
  return e instanceof Error ? e.message : String(e);
}

export function printJson(v: unknown): void {
  process.stdout.write(`${JSON.stringify(v, null, 2)}\n`);
}

/** A plain text table: header row plus aligned columns. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  return `${[line(headers), ...rows.map(line)].join("\n")}\n`;
}

/** uint64 decimal strings from the API as JSON numbers when exact, else kept as strings. */
export function num(v: string): number | string {
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : v;
}
