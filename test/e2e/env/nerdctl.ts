// Real nerdctl (v2, built by scripts/e2e/setup.sh from the Go module proxy) against a suite's private
// containerd: its own namespace, data root, and the instance's CNI dirs, so the conflist it sees is
// the one `nkit install` wrote there. Images come from the local OCI tarballs (no registry).
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync } from "node:fs";
import { join } from "node:path";
import type { ContainerdEnv } from "./containerd.js";
import { CACHE_DIR, IMAGE_TARBALLS, IMAGES } from "./lanes.js";

export function nerdctlBinary(): string {
  const recorded = join(CACHE_DIR, "nerdctl.path");
  const bin =
    process.env.NKIT_E2E_NERDCTL ?? (existsSync(recorded) ? readFileSync(recorded, "utf8").trim() : "");
  if (!bin || !existsSync(bin)) {
    throw new Error(
      `nerdctl not found (${bin || recorded}): run scripts/e2e/setup.sh or set NKIT_E2E_NERDCTL`,
    );
  }
  return bin;
}

export interface NerdctlResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class Nerdctl {
  readonly bin = nerdctlBinary();
  readonly dataRoot: string;

  constructor(
    readonly env: ContainerdEnv,
    readonly namespace: string,
  ) {
    this.dataRoot = join(env.paths.dir, "nerdctl");
    mkdirSync(this.dataRoot, { recursive: true });
  }

  /** The global flags that keep nerdctl on this instance (its OCI hooks get them too). */
  get globals(): string[] {
    const p = this.env.paths;
    return [
      "--address",
      p.grpcSocket,
      "--namespace",
      this.namespace,
      "--data-root",
      this.dataRoot,
      "--cni-path",
      p.cniBinDir,
      "--cni-netconfpath",
      p.cniConfDir,
    ];
  }

  /** Runs nerdctl; never throws on a non-zero exit (see ok()). */
  run(args: readonly string[], timeoutMs = 60_000): Promise<NerdctlResult> {
    return new Promise((resolve) => {
      execFile(
        this.bin,
        [...this.globals, ...args],
        {
          timeout: timeoutMs,
          maxBuffer: 16 << 20,
          env: {
            PATH: `${this.env.binaries.binDir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
          },
        },
        (err, stdout, stderr) => {
          const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
          resolve({ code, stdout, stderr });
        },
      );
    });
  }

  /** Runs nerdctl and returns its stdout; throws with its stderr on failure. */
  async ok(args: readonly string[], timeoutMs?: number): Promise<string> {
    const r = await this.run(args, timeoutMs);
    if (r.code !== 0) throw new Error(`nerdctl ${args.join(" ")} exited ${r.code}:\n${r.stderr}${r.stdout}`);
    return r.stdout;
  }

  /** Loads the local busybox image into this namespace. */
  async loadBusybox(): Promise<string> {
    await this.ok(["load", "-i", IMAGE_TARBALLS[IMAGES.busybox]!], 120_000);
    return IMAGES.busybox;
  }

  /**
   * Removes every container of this namespace (force), ignoring failures, and the cgroup dirs runc
   * made for the namespace (`/<namespace>` in every hierarchy), which nerdctl leaves behind.
   */
  async removeAll(): Promise<void> {
    const ids = (await this.run(["ps", "-aq"])).stdout.split("\n").filter(Boolean);
    if (ids.length) await this.run(["rm", "-f", ...ids], 120_000);
    for (const h of readdirSync("/sys/fs/cgroup")) {
      const dir = join("/sys/fs/cgroup", h, this.namespace);
      if (existsSync(dir)) {
        try {
          rmdirSync(dir);
        } catch {
          // still in use: a container that would not go
        }
      }
    }
  }
}
