// nkitd's parts with a lifecycle (datapath, masquerade, services, CNI endpoint, host services, NRI
// plugin): each declares how it starts, stops and reloads and which parts it needs. One mechanism
// starts them in declaration order (a part whose needs have not started is a programming error),
// unwinds what started when a later start fails, reloads them in order and stops them in reverse.
import { NkitError } from "../errors.js";
import type { Logger } from "../log.js";
import { UndoStack } from "../util/undo-stack.js";
import type { NkitdConfig } from "./config.js";

interface Component<T> {
  name: string;
  /** Parts that must be running before this one starts (and keep running until it stops). */
  needs?: readonly string[];
  start(): Promise<T> | T;
  stop?(value: T): Promise<unknown> | unknown;
  /** Applies what a changed config allows in place (SIGHUP). */
  reload?(value: T, next: NkitdConfig): Promise<void> | void;
  /**
   * Whether nkitd runs on without this part when its start fails (logged as an error); otherwise
   * the failure unwinds every part and fails the start.
   */
  optional?: (error: unknown) => boolean;
}

export class Components {
  private readonly undo: UndoStack;
  private readonly running = new Map<string, { reload?: (next: NkitdConfig) => Promise<void> | void }>();

  constructor(private readonly log: Logger) {
    this.undo = new UndoStack(log);
  }

  /** Starts a part; undefined when an optional part failed. A fatal failure unwinds all and throws. */
  async start<T>(c: Component<T>): Promise<T | undefined> {
    const missing = (c.needs ?? []).filter((n) => !this.running.has(n));
    if (missing.length > 0) {
      await this.stop();
      throw new NkitError("NKIT_INTERNAL", `${c.name} starts before ${missing.join(", ")}, which it needs`);
    }
    let value: T;
    try {
      value = await c.start();
    } catch (e) {
      if (c.optional?.(e) === true) {
        this.log.error({ err: e, component: c.name }, `${c.name} is off: ${(e as Error).message}`);
        return undefined;
      }
      await this.stop();
      throw e;
    }
    const { stop, reload } = c;
    this.running.set(c.name, reload ? { reload: (next) => reload(value, next) } : {});
    this.undo.push(async () => {
      this.running.delete(c.name);
      this.log.debug({ component: c.name }, "stopping");
      await stop?.(value);
    }, `stopping ${c.name}`);
    return value;
  }

  /** Starts a part that may not fail silently. */
  async require<T>(c: Omit<Component<T>, "optional">): Promise<T> {
    return (await this.start(c)) as T;
  }

  /** Reloads every running part that can, in start order. */
  async reload(next: NkitdConfig): Promise<void> {
    for (const part of this.running.values()) await part.reload?.(next);
  }

  /** Stops every running part, newest first; safe to repeat. */
  stop(): Promise<void> {
    return this.undo.rollback();
  }
}
