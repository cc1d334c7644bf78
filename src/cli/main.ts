#!/usr/bin/env node
// nkit: operator CLI. `nkit [--socket PATH] <command> [--json]`.
// Exit codes: 0 ok, 1 failure, 2 usage error, 3 nkitd unreachable, 4 `doctor` found failures.
//
// A command's body loads when it runs: `nkit service add` loads the API client and the service
// flags, not the installer, the doctor, the demo and the BPF binding (loading every module was most
// of a CLI call: `nkit --version` took 424 ms against 110 ms for `node -e 0`).
import { Command, Option } from "commander";
import type { NkitClient } from "../api/client.js";
import { DEFAULT_API_SOCKET } from "../api/defaults.js";
import { VERSION } from "../version.js";
import type { RawInstall } from "./commands.js";
import { EXIT } from "./exit.js";
import type { ServiceAddOptions } from "./services.js";
import type { GlobalOpts } from "./session.js";

const commands = () => import("./commands.js");
const services = () => import("./services.js");
const session = () => import("./session.js");
const nodes = () => import("./nodes.js");

const program = new Command()
  .name("nkit")
  .description("nkit: eBPF container networking for hosts without Kubernetes")
  .version(VERSION)
  .option("--socket <path>", "nkitd API socket", DEFAULT_API_SOCKET)
  .option("--json", "machine-readable output")
  .addHelpText(
    "after",
    "\nExit codes: 0 ok, 1 failure, 2 usage error, 3 nkitd unreachable, 4 doctor found failures.",
  )
  .exitOverride((err) => {
    process.exit(err.exitCode === 0 ? EXIT.OK : EXIT.USAGE);
  });

function globals(cmd: Command): GlobalOpts {
  const o = cmd.optsWithGlobals<{ socket?: string; json?: boolean }>();
  return { socket: o.socket ?? DEFAULT_API_SOCKET, json: Boolean(o.json) };
}

/** Prints an error the way every command does and sets its exit code. */
async function fail(e: unknown): Promise<void> {
  const { errorText, exitCodeOf } = await import("./output.js");
  process.stderr.write(`nkit: ${errorText(e)}\n`);
  process.exitCode = exitCodeOf(e);
}

/** Runs a command body and turns its result or error into the exit code. */
function act<A extends unknown[]>(fn: (cli: GlobalOpts, ...args: A) => number | Promise<number>) {
  return async (...args: unknown[]): Promise<void> => {
    const cmd = args[args.length - 1] as Command;
    const cli = globals(cmd);
    try {
      process.exitCode = await fn(cli, ...(args.slice(0, -1) as A));
    } catch (e) {
      await fail(e);
    }
  };
}

/** act() for a command that makes one API call with a client. */
function api<A extends unknown[]>(fn: (c: NkitClient, cli: GlobalOpts, ...args: A) => Promise<number>) {
  return act<A>(async (cli, ...args) => (await session()).withClient(cli, (c) => fn(c, cli, ...args)));
}

program
  .command("probe")
  .description("report the kernel features nkit's datapath uses")
  .option("--json", "machine-readable output")
  .action(async (opts: { json?: boolean }) => {
    const { probeAll } = await import("../bpf/probe.js");
    const results = probeAll();
    if (opts.json || program.opts<{ json?: boolean }>().json) {
      process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
      return;
    }
    for (const [name, r] of Object.entries(results)) {
      process.stdout.write(
        r.supported ? `pass  ${name}\n` : `fail  ${name}: ${r.reason}\n      needs ${r.need}\n`,
      );
    }
  });

program
  .command("demo")
  .description("wire two throwaway pods onto the BPF datapath and show traffic between them (root)")
  .option("--keep", "leave the pods wired for inspection")
  .action(async (opts: { keep?: boolean }) => {
    const { runDemo } = await import("./demo.js");
    await runDemo((l) => process.stdout.write(`${l}\n`), opts);
  });

program
  .command("status")
  .description("nkitd version, datapath mode, uptime, endpoints, IPAM usage and kernel probes")
  .action(act(async (cli) => (await commands()).statusCmd(cli)));

const endpoint = program.command("endpoint").description("endpoints wired on this host");
endpoint
  .command("list")
  .description("list wired endpoints")
  .action(act(async (cli) => (await commands()).endpointListCmd(cli)));
endpoint
  .command("get")
  .description("one endpoint with its per-reason packet and byte counters")
  .argument("<id>", "endpoint id (e.g. the pod sandbox id)")
  .action(act(async (cli, id: string) => (await commands()).endpointGetCmd(cli, id)));

program
  .command("nat")
  .description("masquerade")
  .command("list")
  .description("the flows masquerade translated: pod, translated and remote address:port, idle time")
  .action(api(async (c, cli) => (await import("./nat.js")).natListCmd(c, cli.json)));

const node = program.command("node").description("nkit hosts: static peers and the Nomad cluster's nodes");
node
  .command("list")
  .description(
    "the hosts this one routes pods to (and itself in a Nomad cluster): addresses, pod CIDRs, route state",
  )
  .action(api(async (c, cli) => (await nodes()).nodeListCmd(c, cli.json)));
node
  .command("forget")
  .description("free the pod CIDR claim of a node that left the Nomad cluster without a clean leave")
  .argument("<name>", "the node's name (nkit node list)")
  .action(api(async (c, cli, name: string) => (await nodes()).nodeForgetCmd(c, cli.json, name)));
node
  .command("leave")
  .description("this node leaves the Nomad cluster: frees its pod CIDR claim; nkitd stops")
  .option("--force", "leave although pods are wired here")
  .action(
    api(async (c, cli, o: { force?: boolean }) =>
      (await nodes()).nodeLeaveCmd(c, cli.json, o.force === true),
    ),
  );

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];
const service = program.command("service").description("services load-balanced by nkitd (socket LB)");
service
  .command("list")
  .description("every service with its frontends, backends and source")
  .action(api(async (c, cli) => (await services()).serviceListCmd(c, cli.json)));
service
  .command("get")
  .description("one service")
  .argument("<name>")
  .action(api(async (c, cli, name: string) => (await services()).serviceGetCmd(c, cli.json, name)));
service
  .command("add")
  .description("add or replace a service (kept across nkitd restarts)")
  .argument("<name>", "service name (a-z 0-9 . _ -)")
  .requiredOption(
    "--vip <addr:port/proto>",
    "frontend, e.g. 10.96.0.10:80/tcp (repeat for more ports)",
    collect,
  )
  .option("--backend <addr:port>", "a backend, e.g. 10.47.0.5:8080 (repeat)", collect)
  .option("--selector <label=value>", "pick backends by endpoint labels instead (repeat)", collect)
  .option("--affinity <mode>", "none or client-ip")
  .option("--affinity-timeout <seconds>", "client-ip affinity lifetime (default 10800)")
  .option("--external", "also load-balance the VIP per packet for other hosts (uplink ingress)")
  .action(
    api(async (c, cli, name: string, o: ServiceAddOptions) =>
      (await services()).serviceAddCmd(c, cli.json, name, o),
    ),
  );
service
  .command("delete")
  .description("remove a service")
  .argument("<name>")
  .action(api(async (c, cli, name: string) => (await services()).serviceDeleteCmd(c, cli.json, name)));

program
  .command("ipam")
  .description("pod CIDR pools and address allocations")
  .action(act(async (cli) => (await commands()).ipamCmd(cli)));

const bpf = program.command("bpf").description("the datapath's BPF objects");
const map = bpf.command("map").description("datapath maps");
map
  .command("list")
  .description("the datapath maps with their sizes and entry counts")
  .action(act(async (cli) => (await commands()).mapListCmd(cli)));
map
  .command("dump")
  .description("decoded entries of one map (nk_endpoints, nk_devices, nk_counters)")
  .argument("<name>", "map name")
  .action(act(async (cli, name: string) => (await commands()).mapDumpCmd(cli, name)));

program
  .command("monitor")
  .description("stream datapath drop events (from the nk_events ring buffer) until interrupted")
  .option("--endpoint <id>", "only events of this endpoint")
  .option(
    "--reason <name>",
    "only this reason, e.g. DROP_SPOOFED_SOURCE (repeatable, or comma-separated)",
    collect,
  )
  .option("--count <n>", "exit after n events")
  .action(
    act(async (cli, o: { endpoint?: string; reason?: string[]; count?: string }) =>
      (await commands()).monitorCmd(cli, o),
    ),
  );

program
  .command("doctor")
  .description("check the kernel, mounts, containerd/NRI, CNI config and nkitd; a verdict and fix per check")
  .option("--cni-conf-dir <dir>", "CNI config dir", "/etc/cni/net.d")
  .option("--cni-bin-dir <dir>", "CNI plugin dir", "/opt/cni/bin")
  .option("--containerd-config <file>", "containerd config", "/etc/containerd/config.toml")
  .option("--containerd <binary>", "containerd binary whose version is checked", "containerd")
  .action(
    act(
      async (
        cli,
        o: { cniConfDir: string; cniBinDir: string; containerdConfig: string; containerd: string },
      ) => (await commands()).doctorCmd(cli, o),
    ),
  );

function installOptions(cmd: Command): Command {
  return cmd
    .option("--systemd-dir <dir>", "where the unit goes", "/etc/systemd/system")
    .option("--tmpfiles-dir <dir>", "where the tmpfiles.d entry goes", "/etc/tmpfiles.d")
    .option("--cni-bin-dir <dir>", "CNI plugin dir", "/opt/cni/bin")
    .option("--cni-conf-dir <dir>", "CNI config dir", "/etc/cni/net.d")
    .option("--containerd-config <file>", "containerd config to check", "/etc/containerd/config.toml")
    .option(
      "--cni-plugin <file>",
      "the nkit-cni binary to install (default: this package's native/cni/build/nkit-cni)",
    )
    .option("--cni-socket <path>", "nkitd's CNI endpoint written into the conflist", "/run/nkit/cni.sock")
    .option("--cni-network <name>", "CNI network name in the conflist", "nkit")
    .option("--config <file>", "nkitd's config file, passed to it by the unit", "/etc/nkit/nkitd.yaml")
    .addOption(
      new Option("--cni-mode <mode>", "conflist mode").choices(["auto", "ipam", "wire"]).default("auto"),
    )
    .option("--nkitd <command>", "ExecStart command of the unit (default: this node + this package's nkitd)")
    .option(
      "--manifest <file>",
      "install manifest (what uninstall removes)",
      "/var/lib/nkit/install-manifest.json",
    );
}

installOptions(
  program
    .command("install")
    .description("install the systemd unit, tmpfiles entry, nkit-cni and its conflist; check containerd NRI"),
)
  .option("--patch-containerd", "enable NRI in the containerd config (a backup is written first)")
  .action(act(async (cli, o: RawInstall) => (await commands()).installCmd(cli, o)));

installOptions(program.command("uninstall").description("remove exactly what `nkit install` wrote")).action(
  act(async (cli, o: RawInstall) => (await commands()).uninstallCmd(cli, o)),
);

program.parseAsync().catch(fail);
