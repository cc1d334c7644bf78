// Calls run with a bounded number in flight, as the load and churn benchmarks drive nkitd and
// containerd: each successful call's latency, the wall time of them all, and what failed.

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

/** Runs calls with at most `concurrency` in flight; each call's latency and error. */
export async function pool(
  n: number,
  concurrency: number,
  call: (i: number) => Promise<void>,
  errors: string[],
): Promise<{ wallMs: number; samples: number[]; failed: number }> {
  const samples: number[] = [];
  let next = 0;
  let failed = 0;
  const t0 = process.hrtime.bigint();
  const worker = async () => {
    while (next < n) {
      const i = next++;
      const t = process.hrtime.bigint();
      try {
        await call(i);
        samples.push(ms(t));
      } catch (e) {
        failed++;
        if (errors.length < 20) errors.push((e as Error).message.slice(0, 400));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
  return { wallMs: Math.round(ms(t0)), samples, failed };
}
