// pino logger factory: JSON lines to stdout for journald, pretty output is left to the operator's
// pipe (`| pino-pretty`) so the daemon has no worker-thread transport to babysit.
import { type LevelWithSilent, type Logger, pino } from "pino";

export type { Logger };

export interface LogOptions {
  level?: LevelWithSilent;
  name?: string;
}

export function createLogger(opts: LogOptions = {}): Logger {
  return pino({
    name: opts.name ?? "nkit",
    level: opts.level ?? "info",
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}
