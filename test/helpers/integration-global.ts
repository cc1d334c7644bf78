// Global setup for the integration project: requires root and a mounted bpffs, and after the whole
// suite asserts that none of this run's netns, interfaces or bpffs pins survived. Leftovers fail
// the run (and are removed so the next run starts clean). Only this run's names are considered, so
// concurrent runs on one machine do not disturb each other. nkit promises a datapath without
// iptables or nftables: the host's rulesets must be the same after the suite as before it.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { runLinkPrefix, runNetnsPrefix } from "./names.js";

function listNetns(): string[] {
  if (!existsSync("/run/netns")) return [];
  return readdirSync("/run/netns").filter((n) => n.startsWith(runNetnsPrefix()));
}

function listLinks(): string[] {
  const out = execFileSync("ip", ["-j", "link", "show"], { encoding: "utf8" });
  return (JSON.parse(out) as { ifname: string }[])
    .map((l) => l.ifname)
    .filter((n) => n.startsWith(runLinkPrefix()));
}

function listPins(): string[] {
  if (!existsSync("/sys/fs/bpf")) return [];
  return readdirSync("/sys/fs/bpf").filter((n) => n.startsWith(runNetnsPrefix()));
}

/** The host's packet filter rules: nftables (iptables-nft's tables included) and both iptables. */
function rulesets(): string {
  const out = (cmd: string, args: string[]): string => {
    try {
      return execFileSync(cmd, args, { encoding: "utf8" });
    } catch (e) {
      return `${cmd} failed: ${(e as Error).message}`;
    }
  };
  return [out("nft", ["list", "ruleset"]), out("iptables-save", []), out("ip6tables-save", [])]
    .join("\n")
    .split("\n")
    .filter((l) => !l.startsWith("#")) // iptables-save's dated header and footer
    .map((l) => l.replace(/\[\d+:\d+\]/g, "")) // packet counters
    .join("\n");
}

let rulesBefore = "";

export function setup(): void {
  if (process.getuid?.() !== 0) {
    throw new Error("integration tests need root (real netns, devices and BPF): run them as root");
  }
  const mounts = readFileSync("/proc/self/mounts", "utf8");
  if (!/ \/sys\/fs\/bpf bpf /.test(mounts)) {
    throw new Error(
      "bpffs is not mounted on /sys/fs/bpf: run scripts/setup-host.sh (or mount -t bpf bpf /sys/fs/bpf)",
    );
  }
  rulesBefore = rulesets();
}

export function teardown(): void {
  const leaked = { netns: listNetns(), links: listLinks(), pins: listPins() };
  for (const n of leaked.netns) execFileSync("ip", ["netns", "del", n]);
  for (const l of leaked.links) {
    try {
      execFileSync("ip", ["link", "del", l]);
    } catch {
      // already removed together with its peer
    }
  }
  for (const p of leaked.pins) rmSync(`/sys/fs/bpf/${p}`, { recursive: true, force: true });
  if (leaked.netns.length + leaked.links.length + leaked.pins.length > 0) {
    throw new Error(`integration tests leaked kernel objects (now removed): ${JSON.stringify(leaked)}`);
  }
  const rulesAfter = rulesets();
  if (rulesAfter !== rulesBefore) {
    throw new Error(
      `the integration suite changed the host's iptables/nftables rules; nkit must not create any.\n--- before ---\n${rulesBefore}\n--- after ---\n${rulesAfter}`,
    );
  }
}
