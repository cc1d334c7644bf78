// Typed slice of the addon for the netlink transport (native/src/netlink.c).
import { loadAddon } from "./load.js";

interface NetlinkAddon {
  /** Opens a bound netlink socket of `protocol`, created inside netnsPath when given, with
   * NETLINK_EXT_ACK, NETLINK_CAP_ACK and NETLINK_GET_STRICT_CHK set. */
  nlOpen(netnsPath: string | null, protocol: number): Promise<number>;
  /** Sends every message in request, then resolves with the received datagrams (each holding one or
   * more whole messages) once every request seq got its final answer; rejects with ETIMEDOUT. */
  nlTransact(fd: number, request: Uint8Array, timeoutMs: number): Promise<Buffer[]>;
  nlClose(fd: number): void;
}

export function netlinkAddon(): NetlinkAddon {
  return loadAddon() as NetlinkAddon;
}
