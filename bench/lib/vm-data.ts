// What the VM benchmark's guest hands to the host, and how it travels: the guest's root is the host's
// root, read-only, and its /tmp is tmpfs, so the guest prints its result on the serial console as
// gzip + base64 lines between two markers (with the size and sha256 of the gzip), and the host cuts
// it out of the console log. Lines are short, so kernel messages can only land between them; a line
// that was garbled anyway fails the checksum instead of producing wrong numbers.
import { createHash } from "node:crypto";
import { gunzipSync, gzipSync } from "node:zlib";
import type { PathInfo, RunRecord } from "./report.js";

const DATA_BEGIN = "NKVM-BENCH-BEGIN";
export const DATA_LINE = "NKVM-DATA ";
const DATA_END = "NKVM-BENCH-END";
/** Printed by the guest (on stderr, so on the console) with its Date.now(): maps guest to host time. */
export const CLOCK_LINE = "NKVM-CLOCK ";

export type VmMode = "netkit" | "veth";
export const VM_MODES: readonly VmMode[] = ["netkit", "veth"];

export interface VmGuestConfig {
  rounds: number;
  seconds: number;
  pods: number;
  cleanThresholdPct: number;
}

/** Raw wire/unwire times (ms) per mode, pod by pod, in the order they were taken. */
export interface VmWiringRaw {
  pods: number;
  /** How the two modes were interleaved. */
  order: string;
  netnsAdd: number[];
  wire: Record<VmMode, number[]>;
  unwire: Record<VmMode, number[]>;
}

/** A measurement, with when it ended (guest clock) and, added by the host's report, the host's noise. */
export interface VmRunRecord extends RunRecord {
  endedAt?: string;
  /** Guest-side verdict (others + steal in the guest ≤ the threshold). */
  guestClean?: boolean;
  host?: { othersPct: number; oursPct: number; windowS: number; samples: number };
}

/** What the host monitor (vm-monitor.ts) records. */
export interface HostSample {
  /** host Date.now() */
  t: number;
  /** /proc/stat ticks, all CPUs */
  total: number;
  idle: number;
  steal: number;
  /** utime+stime of this run's process tree (QEMU, virtiofsd, the scripts) */
  ours: number;
}
export interface HostTrace {
  intervalMs: number;
  /** host time when a NKVM-CLOCK line was seen − the guest time in it, ms */
  clockOffsetsMs: number[];
  samples: HostSample[];
}

export interface VmBenchData {
  version: 1;
  startedAt: string;
  finishedAt: string;
  durationS: number;
  config: VmGuestConfig;
  /** The guest: kernel, vCPUs, node, iperf3, ... */
  env: Record<string, string | number>;
  paths: PathInfo[];
  runs: VmRunRecord[];
  wiring?: VmWiringRaw;
  /** nkit paths: datapath program counters (packets per reason, both pods) over all measurements. */
  counters: Record<string, Record<string, number>>;
  /** Timings of the guest's phases, seconds. */
  phases: Record<string, number>;
  notes: string[];
  /** Set when the run failed part-way: the data is incomplete. */
  error?: string;
}

const CHUNK = 100;

export function encodeData(d: VmBenchData): string[] {
  const gz = gzipSync(Buffer.from(JSON.stringify(d)), { level: 9 });
  const sha = createHash("sha256").update(gz).digest("hex");
  const b64 = gz.toString("base64");
  const lines = [`${DATA_BEGIN} bytes=${gz.length} sha256=${sha}`];
  for (let i = 0; i < b64.length; i += CHUNK) lines.push(`${DATA_LINE}${b64.slice(i, i + CHUNK)}`);
  lines.push(DATA_END);
  return lines;
}

/** Finds the last complete data block in a console log and decodes it; throws when there is none. */
export function decodeData(log: string): VmBenchData {
  const lines = log.split("\n").map((l) => l.replace(/\r+$/, ""));
  let begin = -1;
  for (let i = lines.length - 1; i >= 0; i--) {
    if (lines[i]!.startsWith(DATA_BEGIN)) {
      begin = i;
      break;
    }
  }
  if (begin < 0) throw new Error(`no ${DATA_BEGIN} block in the console log (the guest never finished)`);
  const m = /bytes=(\d+) sha256=([0-9a-f]{64})/.exec(lines[begin]!);
  if (!m) throw new Error(`malformed ${DATA_BEGIN} line: ${lines[begin]}`);
  let b64 = "";
  let ended = false;
  for (const l of lines.slice(begin + 1)) {
    if (l.startsWith(DATA_END)) {
      ended = true;
      break;
    }
    if (l.startsWith(DATA_LINE)) b64 += l.slice(DATA_LINE.length).trim();
  }
  if (!ended) throw new Error(`the data block has no ${DATA_END} line (the guest stopped while printing it)`);
  const gz = Buffer.from(b64, "base64");
  const sha = createHash("sha256").update(gz).digest("hex");
  if (gz.length !== Number(m[1]) || sha !== m[2]) {
    throw new Error(
      `the data block is corrupt (got ${gz.length} bytes sha256 ${sha.slice(0, 12)}…, ` +
        `expected ${m[1]} bytes sha256 ${m[2]!.slice(0, 12)}…): console output interleaved with it?`,
    );
  }
  const d = JSON.parse(gunzipSync(gz).toString()) as VmBenchData;
  if (d.version !== 1) throw new Error(`unknown data version ${String(d.version)}`);
  return d;
}
