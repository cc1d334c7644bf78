// Typed slice of the addon for the systemd notify transport (native/src/sdnotify.c).
import { loadAddon } from "./load.js";

interface SdNotifyAddon {
  sdNotify(socketPath: string, message: string): void;
  /** Test support: a bound AF_UNIX datagram socket standing in for systemd. */
  unixDgramBind(path: string): number;
  /** Blocks up to timeoutMs; null on timeout. */
  unixDgramRecv(fd: number, timeoutMs: number): string | null;
  unixDgramClose(fd: number): void;
}

export function sdNotifyAddon(): SdNotifyAddon {
  return loadAddon() as SdNotifyAddon;
}
