// One measurement round on a client/server pair: TCP_RR and TCP_CRR with bench/tools/build/rr,
// TCP_STREAM with iperf3. Client on CPU 0, server on CPU 1, both SCHED_FIFO.
import { join } from "node:path";
import { type Placement, sh, startServer, stop } from "./proc.js";

export const RR_BIN = join(import.meta.dirname, "..", "tools", "build", "rr");

export interface Side {
  netnsPath?: string;
  ipv4: string;
}

export interface RoundResult {
  rr: { rate: number; p50_us: number; p99_us: number };
  crr: { rate: number; p50_us: number; p99_us: number };
  streamGbps: number;
}

interface RrOut {
  rate: number;
  p50_us: number;
  p99_us: number;
}

let portSeq = 0;

export async function measureRound(client: Side, server: Side, seconds: number): Promise<RoundResult> {
  const port = 17000 + (portSeq++ % 1000);
  const cp: Placement = { cpu: 0, ...(client.netnsPath ? { netnsPath: client.netnsPath } : {}) };
  const spl: Placement = { cpu: 1, ...(server.netnsPath ? { netnsPath: server.netnsPath } : {}) };
  const rrServer = await startServer(RR_BIN, ["server", String(port)], spl, "ready");
  const iperf = await startServer("iperf3", ["-s", "-p", String(port + 1000), "-1"], spl);
  try {
    const rr = JSON.parse(await sh(RR_BIN, ["rr", server.ipv4, String(port), String(seconds)], cp)) as RrOut;
    const crr = JSON.parse(
      await sh(RR_BIN, ["crr", server.ipv4, String(port), String(seconds)], cp),
    ) as RrOut;
    const ip = JSON.parse(
      await sh("iperf3", ["-c", server.ipv4, "-p", String(port + 1000), "-t", String(seconds), "-J"], cp),
    ) as { end: { sum_received: { bits_per_second: number } } };
    return {
      rr: { rate: rr.rate, p50_us: rr.p50_us, p99_us: rr.p99_us },
      crr: { rate: crr.rate, p50_us: crr.p50_us, p99_us: crr.p99_us },
      streamGbps: ip.end.sum_received.bits_per_second / 1e9,
    };
  } finally {
    await stop(rrServer);
    await stop(iperf);
  }
}
