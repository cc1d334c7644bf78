// Steps that undo what was done, run newest first: the rollback of a half-built wiring, the unwinding
// of nkitd's components. A failing step is reported and the rest still run, so one stuck object never
// keeps the others alive.

/** Where a failed step is reported (a pino logger fits). */
interface UndoLog {
  error(obj: object, msg: string): void;
}

export class UndoStack {
  private readonly steps: { what: string; step: () => unknown }[] = [];

  constructor(private readonly log?: UndoLog) {}

  /** Adds a step; `what` names it in the report when it fails. */
  push(step: () => unknown, what = "rollback step"): void {
    this.steps.push({ what, step });
  }

  get size(): number {
    return this.steps.length;
  }

  /** Runs every step, newest first, and empties the stack. */
  async rollback(): Promise<void> {
    for (const { what, step } of this.steps.splice(0).reverse()) {
      try {
        await step();
      } catch (e) {
        this.log?.error({ err: e }, `${what} failed`);
      }
    }
  }
}
