// Typed slice of the addon for the process's native heap (native/src/memory.c).
import { loadAddon } from "./load.js";

interface MemoryAddon {
  /** Bytes malloc holds free in its arenas (mallinfo2's fordblks). */
  mallocFreeBytes(): number;
  /** malloc_trim(0): the arenas' free pages back to the kernel; true when any were. */
  mallocTrim(): boolean;
}

export function memoryAddon(): MemoryAddon {
  return loadAddon() as MemoryAddon;
}
