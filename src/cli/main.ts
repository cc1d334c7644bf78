#!/usr/bin/env node
// nkit: operator CLI. Exit codes: 0 ok, 1 failure, 2 usage error.
import { Command } from "commander";
import { probeAll } from "../bpf/probe.js";
import { NkitError } from "../errors.js";
import { VERSION } from "../version.js";
import { runDemo } from "./demo.js";

const program = new Command()
  .name("nkit")
  .description("nkit: eBPF container networking for hosts without Kubernetes")
  .version(VERSION)
  .exitOverride((err) => {
    process.exit(err.exitCode === 0 ? 0 : 2);
  });

program
  .command("probe")
  .description("report the kernel features nkit's datapath uses")
  .option("--json", "machine-readable output")
  .action((opts: { json?: boolean }) => {
    const results = probeAll();
    if (opts.json) {
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
    await runDemo((l) => process.stdout.write(`${l}\n`), opts);
  });

program.parseAsync().catch((e: unknown) => {
  const code = e instanceof NkitError ? ` [${e.code}]` : "";
  process.stderr.write(`nkit: ${e instanceof Error ? e.message : String(e)}${code}\n`);
  process.exitCode = 1;
});
