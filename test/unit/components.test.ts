// nkitd's component mechanism (src/daemon/components.ts): start order and needs, unwinding in
// reverse on a fatal failure, optional parts, reload in start order, stop once in reverse.
import { Writable } from "node:stream";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { Components } from "../../src/daemon/components.js";
import { defaultConfig } from "../../src/daemon/config.js";

function recording() {
  const lines: { msg: string; component?: string }[] = [];
  const log = pino(
    { level: "info" },
    new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(JSON.parse(chunk.toString()) as { msg: string });
        done();
      },
    }),
  );
  return { log, lines };
}

describe("Components", () => {
  it("starts in order, reloads in order and stops in reverse, once", async () => {
    const { log } = recording();
    const events: string[] = [];
    const parts = new Components(log);
    for (const name of ["a", "b", "c"]) {
      await parts.require({
        name,
        needs: name === "a" ? [] : ["a"],
        start: () => {
          events.push(`start ${name}`);
          return name;
        },
        stop: (v: string) => events.push(`stop ${v}`),
        reload: (v: string) => {
          events.push(`reload ${v}`);
        },
      });
    }
    await parts.reload(defaultConfig());
    await parts.stop();
    await parts.stop();
    expect(events).toEqual([
      "start a",
      "start b",
      "start c",
      "reload a",
      "reload b",
      "reload c",
      "stop c",
      "stop b",
      "stop a",
    ]);
  });

  it("a fatal start failure stops what started, newest first, and rethrows; a failing stop does not stop the rest", async () => {
    const { log, lines } = recording();
    const events: string[] = [];
    const parts = new Components(log);
    await parts.require({ name: "a", start: () => 1, stop: () => events.push("stop a") });
    await parts.require({
      name: "b",
      start: () => 2,
      stop: () => {
        events.push("stop b");
        throw new Error("stuck");
      },
    });
    await expect(
      parts.require({
        name: "c",
        start: () => {
          throw new Error("no c");
        },
      }),
    ).rejects.toThrow("no c");
    expect(events).toEqual(["stop b", "stop a"]);
    expect(lines.some((l) => l.msg === "stopping b failed")).toBe(true);
  });

  it("an optional part that fails is logged and left out; one whose needs are not running is refused", async () => {
    const { log, lines } = recording();
    const parts = new Components(log);
    const v = await parts.start({
      name: "services",
      start: () => {
        throw new Error("no cgroup2");
      },
      optional: () => true,
    });
    expect(v).toBeUndefined();
    expect(lines.find((l) => l.component === "services")?.msg).toBe("services is off: no cgroup2");
    await expect(parts.require({ name: "api", needs: ["services"], start: () => 1 })).rejects.toThrow(
      "api starts before services, which it needs",
    );
  });
});
