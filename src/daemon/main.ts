#!/usr/bin/env -S MALLOC_ARENA_MAX=1 node --max-semi-space-size=1 --optimize-for-size
// nkitd: the host service that owns nkit's datapath. Exit codes: 0 clean stop, 1 runtime failure,
// 2 configuration error.
// Runtime settings (/usr/bin/nkitd runs this file directly; a unit with another Node reads them from
// this line: nkitdLaunch): a 1 MiB young generation per semi-space (V8 grows it to 16) and V8's
// memory-over-speed heap sizing. nkitd's allocations are short-lived request garbage its live heap
// (~20 MiB with 1,000 endpoints) is a small part of: with V8's defaults RSS reached 163 MiB at 1,000
// endpoints and 311 MiB at peak, with these 93 and 143 MiB, for no measurable latency. One malloc
// arena: V8's compiler threads and libuv's pool each kept their own, ~8 MiB more RSS at 10,000
// services (bench/README.md, Memory).
import { Command } from "commander";
import { ConfigError, NkitError } from "../errors.js";
import { createLogger } from "../log.js";
import { trimNativeHeap } from "../process/native-heap.js";
import { SdNotifier } from "../systemd/notify.js";
import { VERSION } from "../version.js";
import { loadConfig, type NkitdConfig } from "./config.js";
import { startDaemon } from "./daemon.js";
import { preflight } from "./preflight.js";

interface Flags {
  config?: string;
  stateDir?: string;
  runDir?: string;
  bpffsDir?: string;
  servicesDir?: string;
  cgroup?: string;
  logLevel?: string;
}

async function main(): Promise<number> {
  const program = new Command()
    .name("nkitd")
    .description("nkit host service: eBPF container datapath for containerd, nerdctl and Nomad")
    .version(VERSION)
    .option("--config <file>", "YAML config (default /etc/nkit/nkitd.yaml; absent = built-in defaults)")
    .option("--state-dir <dir>", "overrides paths.state")
    .option("--run-dir <dir>", "overrides paths.run")
    .option("--bpffs-dir <dir>", "overrides paths.bpffs")
    .option("--services-dir <dir>", "overrides paths.services")
    .option("--cgroup <dir>", "overrides paths.cgroup (the socket load-balancer's cgroup v2 dir)")
    .option("--log-level <level>", "overrides log.level");
  program.parse();
  const flags = program.opts<Flags>();

  const load = (): NkitdConfig => {
    const c = loadConfig(flags.config);
    if (flags.stateDir) c.paths.state = flags.stateDir;
    if (flags.runDir) c.paths.run = flags.runDir;
    if (flags.bpffsDir) c.paths.bpffs = flags.bpffsDir;
    if (flags.servicesDir) c.paths.services = flags.servicesDir;
    if (flags.cgroup) c.paths.cgroup = flags.cgroup;
    if (flags.logLevel) c.log.level = flags.logLevel as NkitdConfig["log"]["level"];
    return c;
  };
  let config: NkitdConfig;
  try {
    config = load();
    await preflight(config);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    process.stderr.write(`nkitd: ${e.message}\n`);
    return 2;
  }
  const log = createLogger({ name: "nkitd", level: config.log.level });
  let daemon: Awaited<ReturnType<typeof startDaemon>>;
  // `nkit node leave` ends nkitd like a signal (it would claim again if it kept running and restarted).
  let requestStop: (why: string) => void = () => undefined;
  let leftEarly = false;
  try {
    daemon = await startDaemon(config, log, {
      onLeft: () => {
        leftEarly = true;
        requestStop("left the Nomad cluster");
      },
    });
  } catch (e) {
    log.fatal({ err: e, code: e instanceof NkitError ? e.code : undefined }, "nkitd failed to start");
    return e instanceof ConfigError ? 2 : 1;
  }
  const notify = new SdNotifier(process.env, log);
  notify.ready(`${daemon.endpoints.mode} datapath, ${daemon.endpoints.list().length} endpoints`);
  log.info({ version: VERSION, pid: process.pid }, "nkitd running");
  const heap = trimNativeHeap({ log });
  await new Promise<void>((resolve) => {
    // Signal handlers alone do not keep Node's event loop alive.
    const keepAlive = setInterval(() => undefined, 1 << 30);
    const stop = (signal: string) => {
      clearInterval(keepAlive);
      log.info({ signal }, "stopping control plane; the datapath keeps forwarding");
      resolve();
    };
    // SIGHUP (systemctl reload): re-read the config; a bad one is refused and the running one kept.
    process.on("SIGHUP", () => {
      let next: NkitdConfig;
      try {
        next = load();
      } catch (e) {
        const key = e instanceof ConfigError ? e.key : undefined;
        log.error({ err: e, key }, "reload refused: the config is not valid; keeping the running one");
        return;
      }
      daemon.reload(next).then(
        (restart) => {
          log.info({ applied: ["masquerade", "timeouts"] }, "config reloaded");
          if (restart.length > 0)
            log.warn({ keys: restart }, "these changes take effect at the next restart");
        },
        (e: unknown) => log.error({ err: e }, "reload failed"),
      );
    });
    requestStop = stop;
    if (leftEarly) stop("left the Nomad cluster");
    process.once("SIGTERM", () => stop("SIGTERM"));
    process.once("SIGINT", () => stop("SIGINT"));
  });
  notify.stopping();
  heap.stop();
  await daemon.stop();
  return 0;
}

/**
 * Exits once main is done: every component has stopped, so a socket still open (a request to Nomad
 * that outlived its stop, a client's keep-alive) must not keep nkitd running.
 */
function exit(code: number): void {
  process.exitCode = code;
  process.stdout.write("", () => process.exit(code));
}

main().then(exit, (e: unknown) => {
  process.stderr.write(`nkitd: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  exit(1);
});
