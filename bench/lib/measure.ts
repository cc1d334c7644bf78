// One measurement on a client/server pair: TCP_RR or TCP_CRR with bench/tools/build/rr, or
// TCP_STREAM with iperf3. Client on CPU 0, server on CPU 1, both SCHED_FIFO (proc.ts). The server is
// started and reaped inside the CPU-accounting window, so its CPU counts as ours (cpu.ts).
import { type CpuSnapshot, type Noise, noiseBetween, snapshot } from "./cpu.js";
import { RR_BIN } from "./paths.js";
import { type Placement, sh, startServer, stop } from "./proc.js";

export interface Side {
  netnsPath?: string;
  ipv4: string;
  /** The client joins this cgroup (socket load-balancer). */
  cgroup?: string;
}

export type TestKind = "rr" | "crr" | "stream";
export const TESTS: readonly TestKind[] = ["rr", "crr", "stream"];

export interface Sample {
  /** transactions/s (rr), connections/s (crr) */
  rate?: number;
  p50_us?: number;
  p90_us?: number;
  p99_us?: number;
  /** TCP_STREAM receiver goodput */
  gbps?: number;
  retransmits?: number;
}

interface Measurement {
  sample: Sample;
  noise: Noise;
}

interface RrOut {
  rate: number;
  p50_us: number;
  p90_us: number;
  p99_us: number;
}

interface IperfOut {
  error?: string;
  end?: { sum_received?: { bits_per_second: number }; sum_sent?: { retransmits?: number } };
}

function placement(side: Side, cpu: number): Placement {
  return {
    cpu,
    ...(side.netnsPath ? { netnsPath: side.netnsPath } : {}),
    ...(side.cgroup ? { cgroup: side.cgroup } : {}),
  };
}

export async function measure(
  test: TestKind,
  client: Side,
  server: Side,
  seconds: number,
  port: number,
): Promise<Measurement> {
  const cp = placement(client, 0);
  const spl = placement(server, 1);
  const timeoutMs = seconds * 1000 + 30_000;
  let a: CpuSnapshot;
  let sample: Sample;
  if (test === "stream") {
    const srv = await startServer(
      "iperf3",
      ["-s", "-1", "--forceflush", "-B", server.ipv4, "-p", String(port)],
      spl,
      "listening",
    );
    a = snapshot();
    try {
      const out = JSON.parse(
        await sh(
          "iperf3",
          ["-c", server.ipv4, "-p", String(port), "-t", String(Math.max(1, Math.round(seconds))), "-J"],
          cp,
          timeoutMs,
        ),
      ) as IperfOut;
      if (out.error || !out.end?.sum_received) throw new Error(`iperf3: ${out.error ?? "no result"}`);
      sample = {
        gbps: out.end.sum_received.bits_per_second / 1e9,
        retransmits: out.end.sum_sent?.retransmits ?? 0,
      };
    } finally {
      await stop(srv);
    }
  } else {
    const srv = await startServer(RR_BIN, ["server", String(port)], spl, "ready");
    a = snapshot();
    try {
      const out = JSON.parse(
        await sh(RR_BIN, [test, server.ipv4, String(port), String(seconds)], cp, timeoutMs),
      ) as RrOut;
      sample = { rate: out.rate, p50_us: out.p50_us, p90_us: out.p90_us, p99_us: out.p99_us };
    } finally {
      await stop(srv);
    }
  }
  return { sample, noise: noiseBetween(a, snapshot()) };
}
