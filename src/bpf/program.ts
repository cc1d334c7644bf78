// A loaded BPF program (an owned fd). Obtained from BpfObject.program() or a pin.
import { bpfAddon, type FdHandle } from "../native/bpf.js";
import { nativeCall } from "./errors.js";
import { OwnedFd, openPinned } from "./handle.js";

interface ProgramInfo {
  id: number;
  /** Kernel-side name (truncated to 15 characters). */
  name: string;
  type: number;
  typeName: string;
  tag: string;
}

export class BpfProgram {
  readonly name: string;
  readonly #fd: OwnedFd;

  /** Takes ownership of handle. */
  constructor(handle: FdHandle, name: string) {
    this.name = name;
    this.#fd = new OwnedFd(handle, `BPF program ${name}`);
  }

  static fromPin(path: string): BpfProgram {
    const h = openPinned(path, "prog");
    const p = new BpfProgram(h, path);
    return p;
  }

  /** The addon handle, for passing to other native calls. */
  get handle(): FdHandle {
    return this.#fd.handle;
  }

  get closed(): boolean {
    return this.#fd.closed;
  }

  /** The fd number, for requests that carry a program by fd (a cls_bpf filter's TCA_BPF_FD). */
  get fd(): number {
    return bpfAddon().fdInfo(this.handle).fd;
  }

  info(): ProgramInfo {
    return nativeCall(`reading info of BPF program ${this.name}`, () => bpfAddon().progInfo(this.handle));
  }

  get id(): number {
    return this.info().id;
  }

  pin(path: string): void {
    nativeCall(`pinning BPF program ${this.name} at ${path}`, () => bpfAddon().objPin(this.handle, path));
  }

  close(): void {
    this.#fd.close();
  }
}
