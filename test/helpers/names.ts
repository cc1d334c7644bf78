// Unique, recognisable names for everything tests create, so concurrent or repeated runs never
// collide and the global leak check finds exactly this run's leftovers. The integration global setup
// sets NKIT_TEST_RUN (4 hex chars) for the whole run. Interface names fit IFNAMSIZ (15 chars).
import { randomBytes } from "node:crypto";

export const TEST_PREFIX = "nkt";

if (!process.env.NKIT_TEST_RUN) process.env.NKIT_TEST_RUN = randomBytes(2).toString("hex");
export const RUN_ID: string = process.env.NKIT_TEST_RUN;

function rand(hexChars: number): string {
  return randomBytes(Math.ceil(hexChars / 2))
    .toString("hex")
    .slice(0, hexChars);
}

/** "nkt" + run id (4) + random (3) + suffix (at most 5): at most 15 chars. */
export function uniqueIfName(suffix = ""): string {
  if (suffix.length > 5) throw new Error(`interface name suffix too long: ${suffix}`);
  return `${TEST_PREFIX}${RUN_ID}${rand(3)}${suffix}`;
}

export function uniqueNetnsName(label = "ns"): string {
  return `${TEST_PREFIX}-${RUN_ID}-${label}-${rand(6)}`;
}

/** A private bpffs directory for one test's pins (not created). */
export function uniqueBpffsDir(label = "pins"): string {
  return `/sys/fs/bpf/${TEST_PREFIX}-${RUN_ID}-${label}-${rand(6)}`;
}

export const runLinkPrefix = (): string => `${TEST_PREFIX}${RUN_ID}`;
export const runNetnsPrefix = (): string => `${TEST_PREFIX}-${RUN_ID}-`;
