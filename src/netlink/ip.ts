// Address helpers for netlink: the family numbers rtnetlink uses; text/byte conversion lives in
// src/util/ip.ts and is re-exported here for the netlink modules.

import type { IpFamily } from "../util/ip.js";
import { AF_INET, AF_INET6 } from "./constants.js";

export {
  formatIp,
  formatMac,
  type IpFamily,
  type ParsedIp,
  type ParsedPrefix,
  parseIp,
  parseMac,
  parsePrefix,
} from "../util/ip.js";

export const afOf = (family: IpFamily): number => (family === 4 ? AF_INET : AF_INET6);

export function familyOfAf(af: number): IpFamily | undefined {
  if (af === AF_INET) return 4;
  if (af === AF_INET6) return 6;
  return undefined;
}
