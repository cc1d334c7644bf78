// The address family numbers rtnetlink uses; addresses themselves are src/util/ip.ts's values.

import type { IpFamily } from "../util/ip.js";
import { AF_INET, AF_INET6 } from "./constants.js";

export const afOf = (family: IpFamily): number => (family === 4 ? AF_INET : AF_INET6);

export function familyOfAf(af: number): IpFamily | undefined {
  if (af === AF_INET) return 4;
  if (af === AF_INET6) return 6;
  return undefined;
}
