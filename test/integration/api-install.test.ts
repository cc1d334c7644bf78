// `nkit install` / `nkit uninstall` into temp dirs: idempotent install, uninstall removes exactly
// what install wrote (and keeps files changed since), the containerd NRI check and patch with a
// backup, and a clear error when the nkit-cni shim is not built.
import { spawn } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { writeScript } from "../helpers/sys.js";

const NKIT = join(import.meta.dirname, "..", "..", "dist", "cli", "main.js");

interface Exit {
  code: number | null;
  stdout: string;
  stderr: string;
}

function nkit(args: string[]): Promise<Exit> {
  const child = spawn(process.execPath, [NKIT, ...args], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  return new Promise((resolve) => child.once("exit", (code) => resolve({ code, stdout, stderr })));
}

let dir: string;
let args: string[];
let plugin: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "nkit-install-"));
  plugin = join(dir, "src-nkit-cni");
  writeScript(plugin, "#!/bin/sh\necho fake nkit-cni\n");
  args = [
    "--systemd-dir",
    join(dir, "etc/systemd/system"),
    "--tmpfiles-dir",
    join(dir, "etc/tmpfiles.d"),
    "--cni-bin-dir",
    join(dir, "opt/cni/bin"),
    "--cni-conf-dir",
    join(dir, "etc/cni/net.d"),
    "--containerd-config",
    join(dir, "etc/containerd/config.toml"),
    "--manifest",
    join(dir, "var/lib/nkit/install-manifest.json"),
    "--cni-plugin",
    plugin,
  ];
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function tree(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      out.push(p.slice(root.length));
      if (e.isDirectory()) walk(p);
    }
  };
  walk(root);
  return out.sort();
}

interface Report {
  files: { path: string; action: string }[];
  containerd: { nriEnabled: boolean | null; patched: boolean; backup: string; version: string };
}

describe("nkit install / uninstall", () => {
  it("installs the unit, tmpfiles, shim and conflist; is idempotent; uninstall removes exactly that", async () => {
    const before = tree(dir);
    const r1 = await nkit(["install", "--json", ...args]);
    expect(r1.code, r1.stderr).toBe(0);
    const rep1 = JSON.parse(r1.stdout) as Report;
    expect(rep1.files.map((f) => f.action)).toEqual(["created", "created", "created", "created", "created"]);
    // The conflist's loopback comes from Debian's plugins when the bin dir has none.
    expect(readFileSync(join(dir, "opt/cni/bin/loopback"))).toEqual(readFileSync("/usr/lib/cni/loopback"));
    expect(statSync(join(dir, "opt/cni/bin/loopback")).mode & 0o777).toBe(0o755);
    const unit = readFileSync(join(dir, "etc/systemd/system/nkitd.service"), "utf8");
    expect(unit).toMatch(/^Type=notify$/m);
    // This Node, with the environment and flags of the daemon's #! line (as /usr/bin/nkitd runs).
    expect(unit).toMatch(
      new RegExp(
        `^ExecStart=/usr/bin/env MALLOC_ARENA_MAX=1 ${process.execPath} --max-semi-space-size=1 --optimize-for-size \\S+/dist/daemon/main.js --config /etc/nkit/nkitd.yaml$`,
        "m",
      ),
    );
    expect(readFileSync(join(dir, "etc/tmpfiles.d/nkit.conf"), "utf8")).toMatch(/\/run\/nkit/);
    const shim = join(dir, "opt/cni/bin/nkit-cni");
    expect(readFileSync(shim, "utf8")).toBe(readFileSync(plugin, "utf8"));
    expect(statSync(shim).mode & 0o777).toBe(0o755);
    const conf = JSON.parse(readFileSync(join(dir, "etc/cni/net.d/10-nkit.conflist"), "utf8")) as {
      cniVersion: string;
      name: string;
      plugins: Record<string, unknown>[];
    };
    // containerd 1.7 and Debian 12's plugins refuse 1.1.0
    expect(conf.cniVersion).toBe("1.0.0");
    expect(conf.name).toBe("nkit");
    expect(conf.plugins[0]).toEqual({ type: "loopback" });
    expect(conf.plugins[1]).toMatchObject({ type: "nkit-cni", mode: "auto", socket: "/run/nkit/cni.sock" });
    // no containerd config: nothing patched, nothing created there
    expect(rep1.containerd.patched).toBe(false);
    expect(existsSync(join(dir, "etc/containerd"))).toBe(false);
    const installed = tree(dir);

    const r2 = await nkit(["install", "--json", ...args]);
    expect(r2.code, r2.stderr).toBe(0);
    expect((JSON.parse(r2.stdout) as Report).files.map((f) => f.action)).toEqual([
      "unchanged",
      "unchanged",
      "unchanged",
      "unchanged",
      "unchanged",
    ]);
    expect(tree(dir)).toEqual(installed);

    const u1 = await nkit(["uninstall", "--json", ...args]);
    expect(u1.code, u1.stderr).toBe(0);
    expect((JSON.parse(u1.stdout) as Report).files.map((f) => f.action)).toEqual([
      "removed",
      "removed",
      "removed",
      "removed",
      "removed",
    ]);
    expect(tree(dir)).toEqual(before);
    const u2 = await nkit(["uninstall", "--json", ...args]);
    expect(u2.code, u2.stderr).toBe(0);
    expect(tree(dir)).toEqual(before);
  });

  it("--cni-network and --config reach the conflist and the unit", async () => {
    const r = await nkit(["install", ...args, "--cni-network", "edge", "--config", "/srv/nkit/nkitd.yaml"]);
    expect(r.code, r.stderr).toBe(0);
    const conf = JSON.parse(readFileSync(join(dir, "etc/cni/net.d/10-nkit.conflist"), "utf8")) as {
      name: string;
    };
    expect(conf.name).toBe("edge");
    const unit = readFileSync(join(dir, "etc/systemd/system/nkitd.service"), "utf8");
    expect(unit).toMatch(/^ExecStart=.* \S+\/dist\/daemon\/main\.js --config \/srv\/nkit\/nkitd\.yaml$/m);
  });

  it("uninstall keeps files changed since install and never touches files it did not write", async () => {
    mkdirSync(join(dir, "etc/cni/net.d"), { recursive: true });
    writeFileSync(join(dir, "etc/cni/net.d/05-other.conflist"), "{}");
    // The operator's own loopback plugin: neither replaced nor removed.
    mkdirSync(join(dir, "opt/cni/bin"), { recursive: true });
    writeFileSync(join(dir, "opt/cni/bin/loopback"), "#!/bin/sh\n", { mode: 0o755 });
    expect((await nkit(["install", ...args])).code).toBe(0);
    writeFileSync(join(dir, "etc/cni/net.d/10-nkit.conflist"), '{"edited": true}');
    const u = await nkit(["uninstall", "--json", ...args]);
    const rep = JSON.parse(u.stdout) as Report;
    expect(rep.files.find((f) => f.path.endsWith("10-nkit.conflist"))?.action).toBe("kept-modified");
    expect(existsSync(join(dir, "etc/cni/net.d/05-other.conflist"))).toBe(true);
    expect(existsSync(join(dir, "etc/cni/net.d/10-nkit.conflist"))).toBe(true);
    expect(existsSync(join(dir, "opt/cni/bin/nkit-cni"))).toBe(false);
    expect(readFileSync(join(dir, "opt/cni/bin/loopback"), "utf8")).toBe("#!/bin/sh\n");
  });

  it("reports NRI disabled on containerd 1.7 and enables it only with --patch-containerd, after a backup", async () => {
    const cfg = join(dir, "etc/containerd/config.toml");
    mkdirSync(join(dir, "etc/containerd"), { recursive: true });
    const original =
      'version = 2\n\n[plugins."io.containerd.nri.v1.nri"]\n  disable = true\n  socket_path = "/var/run/nri/nri.sock"\n';
    writeFileSync(cfg, original);
    const r1 = JSON.parse((await nkit(["install", "--json", ...args])).stdout) as Report;
    expect(r1.containerd.nriEnabled).toBe(false);
    expect(r1.containerd.patched).toBe(false);
    expect(readFileSync(cfg, "utf8")).toBe(original);
    const r2 = JSON.parse(
      (await nkit(["install", "--json", "--patch-containerd", ...args])).stdout,
    ) as Report;
    expect(r2.containerd.patched).toBe(true);
    expect(r2.containerd.nriEnabled).toBe(true);
    expect(readFileSync(r2.containerd.backup, "utf8")).toBe(original);
    const patched = readFileSync(cfg, "utf8");
    expect(patched).toMatch(
      /\[plugins\."io\.containerd\.nri\.v1\.nri"\]\n {2}disable = false\n {2}socket_path/,
    );
    expect(patched).not.toMatch(/disable = true/);
    // already enabled: no second patch, no second backup
    const r3 = JSON.parse(
      (await nkit(["install", "--json", "--patch-containerd", ...args])).stdout,
    ) as Report;
    expect(r3.containerd.patched).toBe(false);
    expect(readdirSync(join(dir, "etc/containerd")).filter((f) => f.includes("nkit-backup"))).toHaveLength(1);
  });

  it("fails clearly (exit 1, nothing written) when the nkit-cni shim is not built", async () => {
    const missing = args.map((a) => (a === plugin ? join(dir, "not-built/nkit-cni") : a));
    const r = await nkit(["install", ...missing]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/nkit-cni shim is not built.*make -C native\/cni/);
    expect(existsSync(join(dir, "etc"))).toBe(false);
  });
});
