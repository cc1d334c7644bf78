// The two binaries as users run them: `nkit probe`, and nkitd starting on a config, refusing a
// second instance on the same state dir, rejecting bad config with exit code 2, and stopping on
// SIGTERM while the datapath stays pinned.

import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { PinDir } from "../../src/bpf/pins.js";
import { sdNotifyAddon } from "../../src/native/sdnotify.js";
import { createTestCgroup } from "../helpers/cgroup.js";
import { uniqueBpffsDir, uniqueIfName } from "../helpers/names.js";
import { spawnNode, waitFor } from "../helpers/process.js";
import { Scope } from "../helpers/scope.js";
import { run } from "../helpers/sys.js";

const ROOT = join(import.meta.dirname, "..", "..");
const NKIT = join(ROOT, "dist", "cli", "main.js");
const NKITD = join(ROOT, "dist", "daemon", "main.js");

let scope: Scope;
beforeEach(() => {
  if (!existsSync(NKITD)) throw new Error("dist/ is missing: run `npm run build` first");
  scope = new Scope();
});
afterEach(() => scope.close());

function tempConfig(extra: string[] = []): { file: string; stateDir: string; bpffsDir: string } {
  const dir = mkdtempSync(join(tmpdir(), "nkitd-test-"));
  scope.defer(() => rmSync(dir, { recursive: true, force: true }));
  const bpffsDir = uniqueBpffsDir("nkitd");
  scope.defer(() => new PinDir(bpffsDir).removeAll());
  const stateDir = join(dir, "state");
  const file = join(dir, "nkitd.yaml");
  writeFileSync(
    file,
    [
      "datapath: auto",
      'podCIDRs: [10.231.0.0/24, "fd31::/64"]',
      `paths: {state: ${stateDir}, run: ${join(dir, "run")}, bpffs: ${bpffsDir}, cgroup: ${createTestCgroup(scope, "cli")}}`,
      "log: {level: info}",
      // never register with a containerd that may run on the test host
      `nri: {enabled: true, socket: ${join(dir, "no-nri.sock")}}`,
      ...extra,
    ].join("\n"),
  );
  return { file, stateDir, bpffsDir };
}

describe("nkit CLI", () => {
  it("probe --json reports netkit missing with the kernel need, and tcx present", async () => {
    const { stdout } = await run(process.execPath, [NKIT, "probe", "--json"]);
    const r = JSON.parse(stdout) as Record<string, { supported: boolean; need?: string }>;
    expect(r.netkit?.supported).toBe(false);
    expect(r.netkit?.need).toMatch(/CONFIG_NETKIT/);
    expect(r.tcx?.supported).toBe(true);
    expect(r.redirect_peer?.supported).toBe(true);
  });

  it("usage errors exit with code 2", async () => {
    const p = spawnNode([NKIT, "no-such-command"]);
    expect((await p.done).code).toBe(2);
  });
});

describe("nkitd", () => {
  it("rejects a bad config with exit code 2 and names the key", async () => {
    const { file } = tempConfig(["mtu: 12"]);
    const p = spawnNode([NKITD, "--config", file]);
    const exit = await p.done;
    expect(exit.code).toBe(2);
    expect(exit.stderr).toMatch(/config key "mtu": 12 is not a usable MTU/);
  });

  it("starts on a config, refuses a second instance, and stops on SIGTERM leaving the datapath pinned", async () => {
    const uplink = uniqueIfName("u");
    await run("ip", ["link", "add", uplink, "type", "veth", "peer", "name", `${uplink}p`]);
    scope.defer(() => run("ip", ["link", "del", uplink]).catch(() => undefined));
    const { file, stateDir, bpffsDir } = tempConfig([`uplinks: [${uplink}]`]);
    const d = spawnNode([NKITD, "--config", file]);
    scope.defer(() => d.child.kill("SIGKILL"));
    await waitFor(() => d.out().includes("nkitd running"), "nkitd to start");
    const ready = d
      .out()
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { msg: string; mode?: string; uplinks?: string[] })
      .find((l) => l.msg === "datapath ready");
    expect(ready?.mode).toBe("veth");
    expect(ready?.uplinks).toEqual([uplink]);
    expect(existsSync(join(bpffsDir, "nk_endpoints"))).toBe(true);
    expect(existsSync(join(bpffsDir, "uplinks", uplink, "from-uplink"))).toBe(true);

    const second = spawnNode([NKITD, "--config", file]);
    const exit2 = await second.done;
    expect(exit2.code).toBe(1);
    expect(exit2.stdout + exit2.stderr).toMatch(/another nkitd \(pid \d+\) owns state dir/);

    d.child.kill("SIGTERM");
    expect((await d.done).code).toBe(0);
    // The control plane is gone; the datapath (maps, uplink link) stays pinned.
    expect(existsSync(join(bpffsDir, "uplinks", uplink, "from-uplink"))).toBe(true);
    expect(existsSync(join(stateDir, "nkitd.pid"))).toBe(false);
  });

  it("speaks the systemd notify protocol: READY, WATCHDOG, STOPPING", async () => {
    const uplink = uniqueIfName("u");
    await run("ip", ["link", "add", uplink, "type", "veth", "peer", "name", `${uplink}p`]);
    scope.defer(() => run("ip", ["link", "del", uplink]).catch(() => undefined));
    const { file } = tempConfig([`uplinks: [${uplink}]`]);
    const dir = mkdtempSync(join(tmpdir(), "nkit-notify-"));
    scope.defer(() => rmSync(dir, { recursive: true, force: true }));
    const sock = join(dir, "notify.sock");
    const sd = sdNotifyAddon();
    const fd = sd.unixDgramBind(sock);
    scope.defer(() => sd.unixDgramClose(fd));
    const d = spawnNode([NKITD, "--config", file], {
      ...process.env,
      NOTIFY_SOCKET: sock,
      WATCHDOG_USEC: "400000",
    });
    scope.defer(() => d.child.kill("SIGKILL"));
    const received: string[] = [];
    const next = async (want: string): Promise<void> => {
      const end = Date.now() + 20_000;
      while (Date.now() < end) {
        // Short blocking polls, so the event loop keeps draining the child's output meanwhile.
        const m = sd.unixDgramRecv(fd, 20);
        if (m !== null) {
          received.push(m);
          if (m.split("\n").includes(want)) return;
        } else {
          await new Promise((r) => setTimeout(r, 20));
        }
      }
      throw new Error(`no ${want} from nkitd; got ${JSON.stringify(received)}`);
    };
    await next("READY=1");
    expect(received.at(-1)).toMatch(/STATUS=veth datapath, 0 endpoints/);
    expect(received.at(-1)).toContain(`MAINPID=${d.child.pid}`);
    await next("WATCHDOG=1");
    d.child.kill("SIGTERM");
    await next("STOPPING=1");
    expect((await d.done).code).toBe(0);
  });
});
