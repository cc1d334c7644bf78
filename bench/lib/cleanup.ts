// Cleanup registry: every object the benchmark creates (netns, devices, pins, state dirs, child
// processes) is registered *before* it is created, and removed in reverse order at the end, on
// failure, or on SIGINT/SIGTERM. Steps are idempotent, so running them twice is harmless.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { killAllChildren } from "./proc.js";

type Step = { label: string; fn: () => unknown };

export class Cleanup {
  private readonly steps: Step[] = [];
  private running: Promise<string[]> | undefined;

  /** Registers a step; the returned function runs it early (and unregisters it). */
  defer(label: string, fn: () => unknown): () => Promise<void> {
    const step: Step = { label, fn };
    this.steps.push(step);
    return async () => {
      const i = this.steps.indexOf(step);
      if (i < 0) return;
      this.steps.splice(i, 1);
      await step.fn();
    };
  }

  /** Runs every step in reverse order; returns the errors (never throws). */
  run(): Promise<string[]> {
    this.running ??= (async () => {
      const errors: string[] = [];
      killAllChildren();
      while (this.steps.length > 0) {
        const step = this.steps.pop()!;
        try {
          await step.fn();
        } catch (e) {
          errors.push(`${step.label}: ${e instanceof Error ? e.message : String(e)}`);
        }
      }
      return errors;
    })();
    return this.running;
  }
}

/** On SIGINT/SIGTERM: kill our children, run the cleanup, exit 130/143. A second signal exits at once. */
export function cleanupOnSignals(cleanup: Cleanup, log: (msg: string) => void): void {
  let caught = false;
  const handler = (sig: NodeJS.Signals) => {
    if (caught) {
      log(`${sig} again: exiting without finishing the cleanup`);
      process.exit(1);
    }
    caught = true;
    log(`${sig}: stopping and cleaning up (netns, devices, pins, processes)...`);
    void cleanup.run().then((errors) => {
      for (const e of errors) log(`cleanup: ${e}`);
      process.exit(sig === "SIGINT" ? 130 : 143);
    });
  };
  process.on("SIGINT", handler);
  process.on("SIGTERM", handler);
  process.on("SIGHUP", handler);
}

/**
 * A host device a benchmark's peer creates and never removes (nerdctl's nerdctl0, Nomad's nomad
 * bridge): removed with the run when it was not there before. The returned function removes it early.
 */
export function removeLinkItMakes(cleanup: Cleanup, name: string): () => Promise<void> {
  const present = () => existsSync(`/sys/class/net/${name}`);
  if (present()) return async () => undefined;
  return cleanup.defer(name, () => {
    if (present()) spawnSync("ip", ["link", "del", name]);
  });
}
