// What the endpoint modules share for one datapath start: the device kind, the host's rtnetlink
// socket, the loaded programs and maps, and this instance's bpffs dir.
import type { PinDir } from "../bpf/pins.js";
import type { Logger } from "../log.js";
import type { Rtnl } from "../netlink/index.js";
import type { DatapathPrograms } from "./programs.js";
import type { DatapathMode } from "./store.js";

export interface DatapathContext {
  readonly mode: DatapathMode;
  readonly host: Rtnl;
  readonly progs: DatapathPrograms;
  readonly pins: PinDir;
  readonly log?: Logger | undefined;
}
