// The shipped unit must pass `systemd-analyze verify`, and its exposure is recorded in docs.
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = join(import.meta.dirname, "..", "..");
const UNIT = readFileSync(join(ROOT, "systemd", "nkitd.service"), "utf8");

describe("systemd/nkitd.service", () => {
  it("is a notify service with a watchdog, restart on failure and hardening", () => {
    for (const line of [
      "Type=notify",
      "Restart=on-failure",
      "NoNewPrivileges=yes",
      "ProtectSystem=strict",
      "ProtectHome=yes",
      "PrivateTmp=yes",
      "KillMode=mixed",
    ]) {
      expect(UNIT).toContain(line);
    }
    expect(UNIT).toMatch(/^WatchdogSec=\d+s$/m);
    expect(UNIT).toMatch(/^CapabilityBoundingSet=CAP_NET_ADMIN CAP_BPF/m);
    expect(UNIT).toMatch(/^ReadWritePaths=.*\/sys\/fs\/bpf/m);
  });

  it("passes systemd-analyze verify", () => {
    const main = join(ROOT, "dist", "daemon", "main.js");
    if (!existsSync(main)) throw new Error("dist/ is missing: run `npm run build:ts` first");
    const dir = mkdtempSync(join(tmpdir(), "nkit-unit-"));
    try {
      // verify insists that ExecStart names an executable that exists here.
      const unit = UNIT.replace("/usr/bin/nkitd", `${process.execPath} ${main}`);
      writeFileSync(join(dir, "nkitd.service"), unit);
      const out = execFileSync("systemd-analyze", ["verify", join(dir, "nkitd.service")], {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "pipe"],
      });
      expect(out).toBe("");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
