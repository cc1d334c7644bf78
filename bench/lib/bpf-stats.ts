// What one run of a BPF program costs, from the kernel's own statistics (kernel.bpf_stats_enabled:
// run_cnt and run_time_ns per program, read with bpftool). End-to-end latencies on this VM move by
// more than a map lookup costs; these say whether a program got dearer, independently of that noise.
import { readFileSync, writeFileSync } from "node:fs";
import type { Cleanup } from "./cleanup.js";
import { sh } from "./proc.js";

const STATS_SYSCTL = "/proc/sys/kernel/bpf_stats_enabled";

export interface ProgramRuns {
  /** Program name as loaded (15 characters at most). */
  name: string;
  runs: number;
  timeNs: number;
}

/** Turns the statistics on for the rest of the run; the cleanup puts the old setting back. */
export function enableBpfStats(cleanup: Cleanup): void {
  const was = readFileSync(STATS_SYSCTL, "utf8").trim();
  writeFileSync(STATS_SYSCTL, "1");
  cleanup.defer("bpf stats", () => writeFileSync(STATS_SYSCTL, was));
}

interface BpftoolCgroupEntry {
  id: number;
}

interface BpftoolProgram {
  id: number;
  name?: string;
  run_cnt?: number;
  run_time_ns?: number;
}

/** Cumulative runs and time of every program attached to the cgroup, by program name. */
export async function cgroupProgramRuns(cgroup: string): Promise<Map<string, ProgramRuns>> {
  const attached = JSON.parse(await sh("bpftool", ["-j", "cgroup", "show", cgroup])) as BpftoolCgroupEntry[];
  const ids = new Set(attached.map((a) => a.id));
  const progs = JSON.parse(await sh("bpftool", ["-j", "prog", "show"])) as BpftoolProgram[];
  const out = new Map<string, ProgramRuns>();
  for (const p of progs) {
    if (!ids.has(p.id)) continue;
    const name = p.name ?? `id${p.id}`;
    const prev = out.get(name);
    const runs = (prev?.runs ?? 0) + (p.run_cnt ?? 0);
    const timeNs = (prev?.timeNs ?? 0) + (p.run_time_ns ?? 0);
    out.set(name, { name, runs, timeNs });
  }
  return out;
}

/** What ran between two readings. */
export function runsBetween(
  before: ReadonlyMap<string, ProgramRuns>,
  after: ReadonlyMap<string, ProgramRuns>,
): ProgramRuns[] {
  return [...after.values()].map((a) => {
    const b = before.get(a.name);
    return { name: a.name, runs: a.runs - (b?.runs ?? 0), timeNs: a.timeNs - (b?.timeNs ?? 0) };
  });
}
