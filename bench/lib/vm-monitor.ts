// Host-side monitor of the VM benchmark (`node bench/dist/bench/vm.js monitor`, fed the live
// console by scripts/vm/bench.sh). Under TCG the guest cannot see the host: when another process on
// the host takes a core, a vCPU thread simply stops and the guest measures a stall. So this samples,
// on the host, how much CPU went to this run's process tree (QEMU, virtiofsd, ...) and how much to
// everyone else, and maps guest time to host time through the NKVM-CLOCK lines the guest prints
// (host time seen − guest time; the smallest value has the least console latency). The report then
// marks a measurement unclean when others were busy on the host during it.
//
// It also filters the console: the data block's base64 lines are dropped from the live output.
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { CLOCK_LINE, DATA_LINE, type HostSample, type HostTrace } from "./vm-data.js";

function statFields(text: string): string[] {
  return text.slice(text.lastIndexOf(")") + 2).split(" ");
}

function procStat(pid: number): { ppid: number; ticks: number } | undefined {
  try {
    const f = statFields(readFileSync(`/proc/${pid}/stat`, "utf8"));
    return { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]) };
  } catch {
    return undefined;
  }
}

/** Every process below root (root included). */
function descendants(root: number): Set<number> {
  const children = new Map<number, number[]>();
  for (const name of readdirSync("/proc")) {
    const c = name.charCodeAt(0);
    if (c < 48 || c > 57) continue;
    const s = procStat(Number(name));
    if (!s) continue;
    const list = children.get(s.ppid) ?? [];
    list.push(Number(name));
    children.set(s.ppid, list);
  }
  const out = new Set<number>([root]);
  const todo = [root];
  while (todo.length) {
    for (const c of children.get(todo.pop()!) ?? []) {
      if (!out.has(c)) {
        out.add(c);
        todo.push(c);
      }
    }
  }
  return out;
}

function sample(pids: Set<number>): HostSample {
  const v = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = v;
  // Ticks of our tree: live processes only (a short-lived helper that exited is lost; they are tiny).
  let ours = 0;
  for (const p of pids) ours += procStat(p)?.ticks ?? 0;
  return {
    t: Date.now(),
    total: user + nice + system + idle + iowait + irq + softirq + steal,
    idle: idle + iowait,
    steal,
    ours,
  };
}

export async function monitorMain(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { root: { type: "string" }, out: { type: "string" }, "interval-ms": { type: "string" } },
  });
  if (!values.root || !values.out) throw new Error("monitor: --root PID and --out FILE are required");
  const root = Number(values.root);
  const interval = Number(values["interval-ms"] ?? 250);
  const trace: HostTrace = { intervalMs: interval, clockOffsetsMs: [], samples: [] };
  let pids = descendants(root);
  let n = 0;
  const timer = setInterval(() => {
    // Rescan the tree every 2 s (QEMU and virtiofsd are long-lived); read only its pids otherwise.
    if (++n % Math.max(1, Math.round(2000 / interval)) === 0) pids = descendants(root);
    trace.samples.push(sample(pids));
  }, interval);
  trace.samples.push(sample(pids));
  const rl = createInterface({ input: process.stdin, crlfDelay: Number.POSITIVE_INFINITY });
  for await (const raw of rl) {
    const line = raw.replace(/\r$/, "");
    const i = line.indexOf(CLOCK_LINE);
    if (i >= 0) {
      const g = Number(line.slice(i + CLOCK_LINE.length).trim());
      if (Number.isFinite(g)) trace.clockOffsetsMs.push(Date.now() - g);
      continue;
    }
    if (line.startsWith(DATA_LINE)) continue;
    process.stdout.write(`${raw}\n`);
  }
  clearInterval(timer);
  trace.samples.push(sample(pids));
  writeFileSync(values.out, JSON.stringify(trace));
  return 0;
}
