// Deferred cleanup that runs in reverse order even when a test fails, and reports every failure.
export type Cleanup = () => unknown | Promise<unknown>;

export class Scope {
  private readonly cleanups: Cleanup[] = [];

  defer(fn: Cleanup): void {
    this.cleanups.push(fn);
  }

  async close(): Promise<void> {
    const errors: unknown[] = [];
    while (this.cleanups.length > 0) {
      const fn = this.cleanups.pop()!;
      try {
        await fn();
      } catch (e) {
        errors.push(e);
      }
    }
    if (errors.length > 0) throw new AggregateError(errors, "test cleanup failed");
  }
}
