// The conntrack in nkitd (src/conntrack): the `timeouts:` section written for the programs at start
// and on reload, and idle entries (load-balanced and masqueraded flows) collected every 30 s.
import type { DatapathObjectMaps } from "../bpf/gen/datapath.skel.js";
import { Conntrack, type CtTimeouts } from "../conntrack/conntrack.js";
import type { Logger } from "../log.js";
import type { NkitdConfig } from "./config.js";

const COLLECT_MS = 30_000;

const seconds = (s: number): bigint => BigInt(s) * 1_000_000_000n;

const timeoutsOf = (c: NkitdConfig): CtTimeouts => ({
  tcpEstablished: seconds(c.timeouts.tcpEstablished),
  tcpOpening: seconds(c.timeouts.tcpOpening),
  tcpClosing: seconds(c.timeouts.tcpClosing),
  other: seconds(c.timeouts.udp),
});

export interface ConntrackService {
  readonly table: Conntrack;
  /** Applies a changed `timeouts:` section (SIGHUP). */
  reconfigure(config: NkitdConfig): void;
  stop(): void;
}

export function startConntrack(config: NkitdConfig, maps: DatapathObjectMaps, log: Logger): ConntrackService {
  const table = Conntrack.open(maps);
  table.setTimeouts(timeoutsOf(config));
  const timer = setInterval(() => {
    try {
      const n = table.collect();
      if (n > 0) log.debug({ entries: n }, "conntrack: idle entries collected");
    } catch (e) {
      log.error({ err: e }, "conntrack: collecting idle entries failed");
    }
  }, COLLECT_MS);
  timer.unref();
  return {
    table,
    reconfigure: (c) => table.setTimeouts(timeoutsOf(c)),
    stop: () => {
      clearInterval(timer);
      table.close();
    },
  };
}
