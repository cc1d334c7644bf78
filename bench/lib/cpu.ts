// How busy the machine was during a measurement, and who made it busy (datapath-lab §5).
//
// /proc/stat gives the whole machine's ticks (all CPUs). Our share is this process plus every child
// it has reaped (utime+stime+cutime+cstime of /proc/self/stat): each measurement starts its server
// and client and reaps both before the closing snapshot, so their CPU lands inside the window.
// Kernel threads (ksoftirqd, kworkers: often doing our packets' softirq work) are counted apart.
// What is left of "busy" is everyone else: the noise that makes a run unclean. Hypervisor steal is
// reported too and counts as noise.
//
// This kernel uses tick accounting without IRQ_TIME_ACCOUNTING: an irq/softirq tick is charged both
// to the irq/softirq column and to whichever task was current (our client/server in most cases, as
// veth and loopback run their softirqs in process context). So irq/softirq is not subtracted again;
// only ticks taken while the idle task was current land in "others" unowned, which errs on the side
// of calling a run unclean. irqPct is reported for information.
import { readdirSync, readFileSync } from "node:fs";

const PF_KTHREAD = 0x00200000;

export interface CpuSnapshot {
  atMs: number;
  total: number;
  idle: number;
  irq: number;
  steal: number;
  ours: number;
  kthreads: number;
}

/** Percent of the whole machine (all CPUs) over a window. */
export interface Noise {
  seconds: number;
  busyPct: number;
  oursPct: number;
  kernelPct: number;
  irqPct: number;
  stealPct: number;
  othersPct: number;
}

function statFields(text: string): string[] {
  // Field 2 (comm) may contain spaces and parentheses: split after the last ')'. Index 0 = field 3.
  return text.slice(text.lastIndexOf(")") + 2).split(" ");
}

function selfTicks(): number {
  const f = statFields(readFileSync("/proc/self/stat", "utf8"));
  return Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
}

function kthreadTicks(): number {
  let sum = 0;
  for (const name of readdirSync("/proc")) {
    if (name.charCodeAt(0) < 48 || name.charCodeAt(0) > 57) continue;
    let text: string;
    try {
      text = readFileSync(`/proc/${name}/stat`, "utf8");
    } catch {
      continue; // exited meanwhile
    }
    const f = statFields(text);
    if ((Number(f[6]) & PF_KTHREAD) !== 0) sum += Number(f[11]) + Number(f[12]);
  }
  return sum;
}

export function snapshot(withKthreads = true): CpuSnapshot {
  const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!;
  // cpu user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user)
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = v;
  return {
    atMs: performance.now(),
    total: user + nice + system + idle + iowait + irq + softirq + steal,
    idle: idle + iowait,
    irq: irq + softirq,
    steal,
    ours: selfTicks(),
    kthreads: withKthreads ? kthreadTicks() : 0,
  };
}

export function noiseBetween(a: CpuSnapshot, b: CpuSnapshot): Noise {
  const total = Math.max(1, b.total - a.total);
  const pct = (x: number) => Math.max(0, (100 * x) / total);
  const busy = total - (b.idle - a.idle);
  const ours = b.ours - a.ours;
  const kernel = b.kthreads - a.kthreads;
  const steal = b.steal - a.steal;
  return {
    seconds: (b.atMs - a.atMs) / 1000,
    busyPct: pct(busy),
    oursPct: pct(ours),
    kernelPct: pct(kernel),
    irqPct: pct(b.irq - a.irq),
    stealPct: pct(steal),
    othersPct: pct(busy - steal - ours - kernel),
  };
}

/** Noise that disqualifies a run: other processes plus hypervisor steal. */
export function noisePct(n: Noise): number {
  return n.othersPct + n.stealPct;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits (at most maxMs) until a 250 ms window shows at most thresholdPct of the machine used by
 * anything but us. Returns how long it waited and whether the machine did go idle.
 */
export async function waitForIdle(
  thresholdPct: number,
  maxMs: number,
): Promise<{ waitedMs: number; idle: boolean; lastPct: number }> {
  const start = performance.now();
  let lastPct = Number.NaN;
  for (;;) {
    const a = snapshot(false);
    await sleep(250);
    const b = snapshot(false);
    const n = noiseBetween(a, b);
    lastPct = Math.max(0, n.busyPct - n.oursPct);
    const waitedMs = performance.now() - start;
    if (lastPct <= thresholdPct) return { waitedMs, idle: true, lastPct };
    if (waitedMs >= maxMs) return { waitedMs, idle: false, lastPct };
  }
}
