// `nkit demo`: wires two throwaway pods (network namespaces) onto the BPF datapath, sends ICMP and
// TCP between them over IPv4 and IPv6, prints what carried the traffic, and removes everything.
// It uses its own bpffs dir, state dir and pod CIDRs, so it never touches a running nkitd.
import { execFile, spawn } from "node:child_process";
import { randomInt } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { PinDir } from "../bpf/pins.js";
import type { WiredEndpoint } from "../datapath/endpoint-manager.js";
import { PodNetwork } from "../pods/network.js";
import { CliError, EXIT, table } from "./output.js";

const execFileP = promisify(execFile);

type Out = (line: string) => void;

async function sh(cmd: string, args: string[]): Promise<string> {
  const { stdout } = await execFileP(cmd, args, { timeout: 30_000 });
  return stdout;
}

const inNs = (ns: string, cmd: string, args: string[]) =>
  sh("nsenter", [`--net=/run/netns/${ns}`, "--", cmd, ...args]);

// Receives bytes until the client closes, then reports the count.
const SINK = `const net=require("net");const s=net.createServer(c=>{let n=0;c.on("data",d=>n+=d.length);c.on("end",()=>{c.end(String(n));s.close()})});s.listen(+process.argv[2],process.argv[1],()=>console.log("ready"))`;
const SOURCE = `const net=require("net");const total=+process.argv[3];const buf=Buffer.alloc(1<<20);const t0=process.hrtime.bigint();const c=net.connect(+process.argv[2],process.argv[1],()=>{let sent=0;const pump=()=>{while(sent<total){sent+=buf.length;if(!c.write(buf))return c.once("drain",pump)}c.end()};pump()});let r="";c.on("data",d=>r+=d);c.on("end",()=>{const ms=Number(process.hrtime.bigint()-t0)/1e6;console.log(JSON.stringify({bytes:+r,ms}))})`;

async function tcpTransfer(fromNs: string, toNs: string, addr: string, port: number, bytes: number) {
  const server = spawn(
    "nsenter",
    [`--net=/run/netns/${toNs}`, "--", process.execPath, "-e", SINK, addr, String(port)],
    {
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  try {
    await new Promise<void>((resolve, reject) => {
      server.stdout.on("data", (d: Buffer) => d.toString().includes("ready") && resolve());
      server.once("exit", (c) => reject(new Error(`TCP sink exited with ${c}`)));
    });
    const out = await inNs(fromNs, process.execPath, ["-e", SOURCE, addr, String(port), String(bytes)]);
    return JSON.parse(out) as { bytes: number; ms: number };
  } finally {
    server.kill();
  }
}

export async function runDemo(out: Out, opts: { keep?: boolean } = {}): Promise<void> {
  if (process.getuid?.() !== 0)
    throw new CliError("nkit demo creates network namespaces and BPF links: run it as root", EXIT.FAILURE);
  const tag = `${process.pid.toString(36)}${randomInt(36 ** 3).toString(36)}`;
  const stateDir = mkdtempSync(join(tmpdir(), "nkit-demo-"));
  const bpffs = new PinDir(`/sys/fs/bpf/nkit-demo-${tag}`);
  const cidr4 = `10.249.${randomInt(0, 255)}.0/24`;
  const cidr6 = `fd49:${randomInt(1, 0xffff).toString(16)}::/64`;
  const pods = [`nkit-demo-${tag}-a`, `nkit-demo-${tag}-b`];
  let net: PodNetwork | undefined;
  const created: string[] = [];
  try {
    net = await PodNetwork.open({ bpffsDir: bpffs.root, stateDir, podCIDRs: [cidr4, cidr6] });
    const mgr = net.endpoints;
    out(
      `datapath mode: ${mgr.mode}${mgr.mode === "veth" ? " (this kernel has no netkit: veth + tc fallback)" : ""}`,
    );
    out(`pod CIDRs: ${cidr4}, ${cidr6}`);
    const eps: WiredEndpoint[] = [];
    for (const ns of pods) {
      await sh("ip", ["netns", "add", ns]);
      created.push(ns);
      const t0 = process.hrtime.bigint();
      eps.push(await net.pods.admit({ id: ns, netnsPath: `/run/netns/${ns}`, labels: { app: "demo" } }));
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      out(`wired ${ns} in ${ms.toFixed(1)} ms`);
    }
    out("");
    out(
      table(
        ["pod netns", "host device", "ifindex", "IPv4", "IPv6"],
        eps.map((e, i) => [
          pods[i]!,
          e.hostIfName,
          String(e.hostIfindex),
          e.addresses.ipv4 ?? "-",
          e.addresses.ipv6 ?? "-",
        ]),
      ).trimEnd(),
    );
    const [a, b] = eps as [WiredEndpoint, WiredEndpoint];
    out("");
    for (const addr of [b.addresses.ipv4, b.addresses.ipv6]) {
      if (!addr) continue;
      const res = await inNs(pods[0]!, "ping", ["-c", "3", "-i", "0.2", "-W", "2", addr]);
      const summary = res.split("\n").filter((l) => /packets transmitted|rtt/.test(l));
      out(`ping pod a -> pod b ${addr}: ${summary.join("; ")}`);
    }
    for (const addr of [b.addresses.ipv4, b.addresses.ipv6]) {
      if (!addr) continue;
      const r = await tcpTransfer(pods[0]!, pods[1]!, addr, 7070, 256 << 20);
      out(
        `TCP pod a -> pod b ${addr}: ${(r.bytes / 2 ** 20).toFixed(0)} MiB in ${r.ms.toFixed(0)} ms = ${((r.bytes * 8) / (r.ms * 1e6)).toFixed(2)} Gbit/s`,
      );
    }
    out("");
    out(
      "BPF counters (per endpoint and reason; pod b's REDIRECT_PEER is traffic delivered to it by bpf_redirect_peer):",
    );
    const rows: string[][] = [];
    for (const [i, ep] of [a, b].entries()) {
      for (const [reason, c] of Object.entries(mgr.counters(ep.id))) {
        rows.push([pods[i]!, reason, String(c.packets), String(c.bytes)]);
      }
    }
    out(table(["pod", "reason", "packets", "bytes"], rows).trimEnd());
    if (opts.keep) {
      out("");
      out(`--keep: left pods ${pods.join(", ")}, bpffs ${bpffs.root}, state ${stateDir} in place`);
      return;
    }
  } finally {
    if (!opts.keep) {
      if (net) {
        for (const ep of net.endpoints.list()) await net.pods.release(ep.id).catch(() => undefined);
        await net.close();
      }
      for (const ns of created) await sh("ip", ["netns", "del", ns]).catch(() => undefined);
      bpffs.removeAll();
      rmSync(stateDir, { recursive: true, force: true });
    } else {
      await net?.close();
    }
  }
  out("");
  out("cleaned up: pods unwired, namespaces, pins and state removed");
}
