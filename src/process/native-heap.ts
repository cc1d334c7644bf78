// nkitd's native heap. glibc keeps what malloc freed in its arenas, counted in RSS, until
// malloc_trim(3) hands the free pages back to the kernel: right after starting that was 10 MiB
// (the parser's memory of the 1.6 MB bundle), after a burst of pods or services more. A trim costs
// ~0.1 ms, so nkitd trims once it has started and then whenever malloc holds more than a little
// free (checked every few seconds).
import type { Logger } from "../log.js";
import { memoryAddon } from "../native/memory.js";

export interface NativeHeapTrimOptions {
  /** How often to look (default 10 s). */
  everyMs?: number;
  /** Trim when malloc holds more than this free (default 1 MiB). */
  thresholdBytes?: number;
  log?: Logger;
}

/** Trims now, then every `everyMs` when worth it; stop() ends it. The timer never holds the process. */
export function trimNativeHeap(o: NativeHeapTrimOptions = {}): { stop(): void } {
  const addon = memoryAddon();
  const threshold = o.thresholdBytes ?? 1024 * 1024;
  const trim = (why: string): void => {
    const free = addon.mallocFreeBytes();
    if (free <= threshold) return;
    const released = addon.mallocTrim();
    o.log?.debug({ freeBytes: free, released, why }, "native heap trimmed");
  };
  trim("started");
  const timer = setInterval(() => trim("periodic"), o.everyMs ?? 10_000);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
