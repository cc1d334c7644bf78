// Which containerd the e2e harness runs, and where the cached artefacts from scripts/e2e/setup.sh live.
//   NKIT_E2E_CONTAINERD   "1.7" (default; Debian's 1.7.24 from trixie) or "2" (the 2.x built from the Go proxy)
//   NKIT_E2E_CACHE        cache root (default /var/cache/nkit/e2e), as in scripts/e2e/setup.sh
//   NKIT_E2E_CONTAINERD2_BIN  directory holding containerd, containerd-shim-runc-v2 and ctr for lane 2
//                         (default: the path setup.sh recorded in $NKIT_E2E_CACHE/containerd2.path)
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

export type Lane = "1.7" | "2";

export const CACHE_DIR = process.env.NKIT_E2E_CACHE || "/var/cache/nkit/e2e";

export const IMAGES = {
  pause: "localhost/pause:test",
  busybox: "localhost/busybox:test",
} as const;

export const IMAGE_TARBALLS: Readonly<Record<string, string>> = {
  [IMAGES.pause]: join(CACHE_DIR, "images", "pause.oci.tar"),
  [IMAGES.busybox]: join(CACHE_DIR, "images", "busybox.oci.tar"),
};

/** Debian's CNI plugins (containernetworking-plugins). */
export const SYSTEM_CNI_DIR = "/usr/lib/cni";
export const RUNC = "/usr/sbin/runc";

export function laneFromEnv(env: NodeJS.ProcessEnv = process.env): Lane {
  const v = (env.NKIT_E2E_CONTAINERD ?? "").trim();
  if (v === "" || v === "1" || v === "1.7" || v === "1.7.x") return "1.7";
  if (v === "2" || v === "2.x" || v.startsWith("2.")) return "2";
  throw new Error(`NKIT_E2E_CONTAINERD=${v}: expected "1.7" or "2"`);
}

export interface Binaries {
  lane: Lane;
  containerd: string;
  ctr: string;
  /** Directory that must come first in containerd's PATH so it finds the matching shim. */
  binDir: string;
}

export function binariesFor(lane: Lane): Binaries {
  if (lane === "1.7") {
    const b = { lane, containerd: "/usr/bin/containerd", ctr: "/usr/bin/ctr", binDir: "/usr/bin" };
    if (!existsSync(b.containerd))
      throw new Error("containerd 1.7 is not installed: run scripts/e2e/setup.sh");
    return b;
  }
  let dir = process.env.NKIT_E2E_CONTAINERD2_BIN;
  const recorded = join(CACHE_DIR, "containerd2.path");
  if (!dir && existsSync(recorded)) dir = readFileSync(recorded, "utf8").trim();
  if (!dir || !existsSync(join(dir, "containerd")) || !existsSync(join(dir, "containerd-shim-runc-v2"))) {
    throw new Error(
      `containerd 2.x binaries not found (${dir ?? recorded}): run scripts/e2e/setup.sh --lane=2 ` +
        "or set NKIT_E2E_CONTAINERD2_BIN",
    );
  }
  return { lane, containerd: join(dir, "containerd"), ctr: join(dir, "ctr"), binDir: dir };
}

/** Fails early with the command that fixes it when setup.sh has not run. */
export function assertPrepared(lane: Lane): Binaries {
  const b = binariesFor(lane);
  for (const [ref, file] of Object.entries(IMAGE_TARBALLS)) {
    if (!existsSync(file)) throw new Error(`image ${ref} missing (${file}): run scripts/e2e/setup.sh`);
  }
  for (const p of [RUNC, join(SYSTEM_CNI_DIR, "loopback")]) {
    if (!existsSync(p)) throw new Error(`${p} missing: run scripts/e2e/setup.sh`);
  }
  return b;
}
