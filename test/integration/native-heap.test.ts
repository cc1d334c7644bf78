// nkitd's native heap trim (src/process/native-heap.ts) in a fresh Node process with one malloc
// arena, as nkitd runs: memory malloc freed stays resident until the trim hands it back.
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";

const DIST = join(import.meta.dirname, "..", "..", "dist");

/** Runs `body` (an ES module) in a child node with nkitd's malloc setting; its stdout as JSON. */
function child<T>(body: string): T {
  const out = execFileSync(process.execPath, ["--expose-gc", "--input-type=module", "-e", body], {
    env: { ...process.env, MALLOC_ARENA_MAX: "1" },
    encoding: "utf8",
  });
  return JSON.parse(out) as T;
}

describe("native heap trim", () => {
  it("hands malloc's free pages back to the kernel once started, and says what it found", () => {
    const r = child<{
      freedMiB: number;
      beforeMiB: number;
      afterMiB: number;
      logged: { freeBytes: number; why: string }[];
    }>(`
      import { readFileSync } from "node:fs";
      import { trimNativeHeap } from ${JSON.stringify(pathToFileURL(join(DIST, "process", "native-heap.js")).href)};
      const anonMiB = () => Number(/^RssAnon:\\s+(\\d+)/m.exec(readFileSync("/proc/self/status", "utf8"))[1]) / 1024;
      // 160 MiB of 8 KiB buffers (malloc'd backing stores), every 16th kept so the arena's top stays
      // in use and free() alone cannot shrink it.
      let all = Array.from({ length: 20480 }, () => Buffer.allocUnsafeSlow(8192).fill(1));
      const kept = all.filter((_, i) => i % 16 === 0);
      all = undefined;
      globalThis.gc(); globalThis.gc();
      const beforeMiB = anonMiB();
      const logged = [];
      const log = { debug: (o) => logged.push(o) };
      const t = trimNativeHeap({ log, everyMs: 60000 });
      t.stop();
      const afterMiB = anonMiB();
      console.log(JSON.stringify({ freedMiB: beforeMiB - afterMiB, beforeMiB, afterMiB, logged, kept: kept.length }));
    `);
    expect(r.logged).toHaveLength(1);
    expect(r.logged[0]?.why).toBe("started");
    // ~150 MiB was freed; most of it must leave RSS.
    expect(r.logged[0]?.freeBytes).toBeGreaterThan(100 * 1024 * 1024);
    expect(r.freedMiB, JSON.stringify(r)).toBeGreaterThan(100);
  });

  it("leaves a heap with little free alone", () => {
    const r = child<{ logged: unknown[] }>(`
      import { trimNativeHeap } from ${JSON.stringify(pathToFileURL(join(DIST, "process", "native-heap.js")).href)};
      const logged = [];
      trimNativeHeap({ log: { debug: (o) => logged.push(o) }, thresholdBytes: 1024 ** 3 }).stop();
      console.log(JSON.stringify({ logged }));
    `);
    expect(r.logged).toEqual([]);
  });
});
