// pino logger factory: JSON lines to stdout (journald keeps them as they are); on an interactive
// terminal the same records go through pino-pretty, so an operator running nkitd by hand can read them.
import { createRequire } from "node:module";
import { type LevelWithSilent, type Logger, pino } from "pino";
import type pinoPretty from "pino-pretty";

export type { Logger };

interface LogOptions {
  level?: LevelWithSilent;
  name?: string;
  /** Default: pretty when stdout is a TTY and NO_COLOR/NKIT_LOG_JSON are unset. */
  pretty?: boolean;
}

export function createLogger(opts: LogOptions = {}): Logger {
  const options = {
    name: opts.name ?? "nkit",
    level: opts.level ?? "info",
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  const wantPretty = opts.pretty ?? (process.stdout.isTTY === true && !process.env.NKIT_LOG_JSON);
  if (!wantPretty) return pino(options);
  // Loaded only for a terminal: under systemd (JSON lines) it would cost nkitd ~2 MiB for nothing.
  const pretty = createRequire(import.meta.url)("pino-pretty") as typeof pinoPretty;
  // In-process stream (no worker thread): a daemon has no transport thread to babysit.
  return pino(
    options,
    pretty({ colorize: !process.env.NO_COLOR, translateTime: "SYS:HH:MM:ss.l", sync: true }),
  );
}
