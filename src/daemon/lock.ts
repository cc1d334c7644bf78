// One nkitd per state dir: two writers of the same maps and records would undo each other.

import { closeSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { NkitError } from "../errors.js";
import { pidAlive } from "../util/pid.js";

export interface InstanceLock {
  release(): void;
}

export function acquireInstanceLock(stateDir: string): InstanceLock {
  const path = join(stateDir, "nkitd.pid");
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, "wx", 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return {
        release: () => {
          try {
            if (readFileSync(path, "utf8").trim() === String(process.pid)) rmSync(path);
          } catch {
            // already gone
          }
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
      const holder = Number(readFileSync(path, "utf8").trim());
      if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && pidAlive(holder)) {
        throw new NkitError(
          "NKIT_ALREADY_EXISTS",
          `another nkitd (pid ${holder}) owns state dir ${stateDir}; stop it or give this instance its own --state-dir`,
        );
      }
      rmSync(path, { force: true }); // stale: its owner died without cleaning up
    }
  }
  throw new NkitError("NKIT_ALREADY_EXISTS", `could not lock state dir ${stateDir}`);
}
