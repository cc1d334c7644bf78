// An owned fd handle that refuses use after close. The addon also closes the fd when the handle is
// garbage-collected, so close() is about promptness, not leak safety.
import { BpfError, InvalidArgumentError } from "../errors.js";
import { bpfAddon, type FdHandle, type FdKind } from "../native/bpf.js";
import { nativeCall } from "./errors.js";

export class OwnedFd {
  #handle: FdHandle | undefined;
  readonly what: string;

  constructor(handle: FdHandle, what: string) {
    this.#handle = handle;
    this.what = what;
  }

  get handle(): FdHandle {
    if (!this.#handle) throw new BpfError(`${this.what} is closed`, "EBADF");
    return this.#handle;
  }

  get closed(): boolean {
    return this.#handle === undefined;
  }

  close(): void {
    if (this.#handle) bpfAddon().fdClose(this.#handle);
    this.#handle = undefined;
  }
}

const KIND_NAME: Record<FdKind, string> = {
  map: "map",
  prog: "program",
  link: "link",
  other: "non-BPF object",
};

/** Opens a pin and checks it holds the expected kind of object (closing it otherwise). */
export function openPinned(path: string, want: FdKind): FdHandle {
  const addon = bpfAddon();
  const h = nativeCall(`opening BPF pin ${path}`, () => addon.objGet(path));
  const { kind } = addon.fdInfo(h);
  if (kind !== want) {
    addon.fdClose(h);
    throw new InvalidArgumentError(`${path} holds a pinned ${KIND_NAME[kind]}, not a ${KIND_NAME[want]}`);
  }
  return h;
}
