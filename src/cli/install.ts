// `nkit install` / `nkit uninstall`: the systemd unit and tmpfiles entry, the nkit-cni shim, the
// CNI conflist, and a containerd NRI check (patched only with --patch-containerd, after a backup).
// Install is idempotent (unchanged files are left alone); every file it writes and every directory
// it creates is recorded with its content hash in a manifest, and uninstall removes exactly those
// (files changed since are kept and reported).
import { createHash } from "node:crypto";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmdirSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { dirname, join, resolve } from "node:path";
import { nkitdLaunch, PREBUILD_DIR, packageFile } from "../package-files.js";
import { type DocumentFormat, readDocument, writeDocument } from "../state/json-store.js";
import { arrayOf, object, string } from "../state/shape.js";
import { containerdVersion, enableNri, nriState } from "./containerd.js";
import { CliError, EXIT } from "./output.js";

export interface InstallOptions {
  systemdDir: string;
  tmpfilesDir: string;
  cniBinDir: string;
  cniConfDir: string;
  containerdConfig: string;
  patchContainerd: boolean;
  /** Source of the shim binary (default native/cni/build/nkit-cni of this package). */
  cniPlugin: string;
  manifest: string;
  cniSocket: string;
  cniMode: "auto" | "ipam" | "wire";
  /** ExecStart command of the unit (default: this node + this package's dist/daemon/main.js). */
  nkitd: string;
  /** nkitd's config file, passed as --config in the unit's ExecStart. */
  config: string;
  /** The CNI network name in the conflist (runtimes key their result caches on it). */
  cniNetwork: string;
}

export type FileAction = "created" | "updated" | "unchanged" | "removed" | "kept-modified" | "absent";

export interface FileReport {
  path: string;
  action: FileAction;
}

interface ContainerdReport {
  config: string;
  version: string;
  nriEnabled: boolean | null;
  detail: string;
  patched: boolean;
  backup: string;
}

interface InstallReport {
  files: FileReport[];
  directories: string[];
  containerd: ContainerdReport;
  manifest: string;
  next: string[];
}

interface Manifest {
  files: { path: string; sha256: string }[];
  directories: string[];
}

/** What install wrote, so uninstall removes exactly that (and upgrades know what they replace). */
const MANIFEST: DocumentFormat<Manifest> = {
  version: 1,
  shape: object<Manifest>({
    files: arrayOf(object<Manifest["files"][number]>({ path: string, sha256: string })),
    directories: arrayOf(string),
  }),
  indent: 2,
};

const CONFLIST_NAME = "10-nkit.conflist";
/**
 * The conflist's cniVersion: the newest spec every runtime in the support matrix reads. containerd
 * 1.7 (libcni 1.1) and Debian 12's CNI plugins 1.1.1 stop at 1.0.0 ("unsupported CNI result
 * version 1.1.0"); containerd 2.x, nerdctl 2 and Nomad read 1.0.0 too. nkit-cni answers in the
 * version the conflist declares, and 1.0.0 has no STATUS call to fail while nkitd starts.
 */
export const CONFLIST_CNI_VERSION = "1.0.0";
const UNIT_NAME = "nkitd.service";
const TMPFILES_NAME = "nkit.conf";

function packageRoot(): string {
  const unit = packageFile(join("systemd", UNIT_NAME));
  if (!unit) throw new CliError("cannot find systemd/nkitd.service in the nkit package", EXIT.FAILURE);
  return dirname(dirname(unit));
}

/**
 * nkitd as the unit starts it: /usr/bin/nkitd when that is this package's daemon (the Debian
 * package, whose own unit says so too), else this Node running this package's daemon.
 */
export function defaultNkitdCommand(): string {
  const { script, env, nodeArgs } = nkitdLaunch();
  try {
    if (realpathSync(PACKAGED_NKITD) === realpathSync(script)) return PACKAGED_NKITD;
  } catch {
    // no /usr/bin/nkitd: not the Debian package
  }
  // This Node (not whichever `node` systemd's PATH finds), with what the daemon's #! line sets.
  const assignments = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  return [
    ...(assignments.length > 0 ? ["/usr/bin/env", ...assignments] : []),
    process.execPath,
    ...nodeArgs,
    script,
  ].join(" ");
}

const PACKAGED_NKITD = "/usr/bin/nkitd";

/** This checkout's nkit-cni build, else the package's prebuilt one. */
export function defaultCniPlugin(): string {
  const built = join("native", "cni", "build", "nkit-cni");
  return packageFile(built, join(PREBUILD_DIR, "nkit-cni")) ?? join(packageRoot(), built);
}

const sha = (b: Buffer | string): string => createHash("sha256").update(b).digest("hex");

function conflist(o: Pick<InstallOptions, "cniSocket" | "cniMode" | "cniNetwork">): string {
  return `${JSON.stringify(
    {
      cniVersion: CONFLIST_CNI_VERSION,
      name: o.cniNetwork,
      // loopback first: nkit-cni's ADD starts wiring in the background, which takes the RTNL lock
      // for each of its netlink batches; a plugin after it would queue behind them.
      plugins: [
        { type: "loopback" },
        {
          type: "nkit-cni",
          mode: o.cniMode,
          socket: o.cniSocket,
          capabilities: { portMappings: true, ips: true },
        },
      ],
    },
    null,
    2,
  )}\n`;
}

function unitText(o: Pick<InstallOptions, "nkitd" | "config">): string {
  const src = readFileSync(join(packageRoot(), "systemd", UNIT_NAME), "utf8");
  return src.replace(/^ExecStart=.*$/m, `ExecStart=${o.nkitd} --config ${o.config}`);
}

interface Planned {
  path: string;
  content: Buffer;
  mode: number;
}

/** Where distributions put the CNI reference plugins (Debian and Ubuntu, Fedora). */
const SYSTEM_CNI_DIRS = ["/usr/lib/cni", "/usr/libexec/cni"];

/**
 * The conflist chains `loopback`: a bin dir without one (/opt/cni/bin on a fresh Debian, whose
 * package puts the plugins in /usr/lib/cni) gets the distribution's copy. One already there that
 * install did not write is the operator's and stays untouched.
 */
function loopbackPlan(o: InstallOptions, owned: ReadonlySet<string>): Planned | undefined {
  const path = join(o.cniBinDir, "loopback");
  if (existsSync(path) && !owned.has(path)) return undefined;
  const source = SYSTEM_CNI_DIRS.map((d) => join(d, "loopback")).find(
    (f) => existsSync(f) && resolve(f) !== resolve(path),
  );
  return source ? { path, content: readFileSync(source), mode: 0o755 } : undefined;
}

function plan(o: InstallOptions, owned: ReadonlySet<string>): Planned[] {
  if (!existsSync(o.cniPlugin)) {
    throw new CliError(
      `the nkit-cni shim is not built (${o.cniPlugin} is missing): run \`make -C native/cni\` (or \`npm run build\`), or pass --cni-plugin FILE; nothing was installed`,
      EXIT.FAILURE,
    );
  }
  return [
    { path: join(o.systemdDir, UNIT_NAME), content: Buffer.from(unitText(o)), mode: 0o644 },
    {
      path: join(o.tmpfilesDir, TMPFILES_NAME),
      content: readFileSync(join(packageRoot(), "systemd", "nkit.tmpfiles.conf")),
      mode: 0o644,
    },
    { path: join(o.cniBinDir, "nkit-cni"), content: readFileSync(o.cniPlugin), mode: 0o755 },
    { path: join(o.cniConfDir, CONFLIST_NAME), content: Buffer.from(conflist(o)), mode: 0o644 },
    ...[loopbackPlan(o, owned)].filter((p): p is Planned => p !== undefined),
  ];
}

/** Creates dir and its missing parents; returns the ones it created, outermost first. */
function mkdirs(dir: string): string[] {
  const missing: string[] = [];
  let d = resolve(dir);
  while (!existsSync(d)) {
    missing.unshift(d);
    d = dirname(d);
  }
  if (missing.length) mkdirSync(dir, { recursive: true, mode: 0o755 });
  return missing;
}

function containerdReport(o: InstallOptions): ContainerdReport {
  const version = containerdVersion();
  const nri = nriState(o.containerdConfig, version);
  const report: ContainerdReport = {
    config: o.containerdConfig,
    version: version?.text ?? "",
    nriEnabled: nri.enabled ?? null,
    detail: nri.detail,
    patched: false,
    backup: "",
  };
  if (o.patchContainerd && nri.enabled !== true) {
    const r = enableNri(o.containerdConfig);
    report.patched = r.changed;
    report.backup = r.backup ?? "";
    const after = nriState(o.containerdConfig, version);
    report.nriEnabled = after.enabled ?? null;
    report.detail = after.detail;
  }
  return report;
}

export function install(o: InstallOptions): InstallReport {
  const old = readDocument(o.manifest, MANIFEST);
  const planned = plan(o, new Set(old?.files.map((f) => f.path)));
  const directories = new Set(old?.directories ?? []);
  const files: FileReport[] = [];
  for (const p of planned) {
    for (const d of mkdirs(dirname(p.path))) directories.add(d);
    let action: FileAction = "created";
    if (existsSync(p.path)) {
      action = readFileSync(p.path).equals(p.content) ? "unchanged" : "updated";
    }
    if (action !== "unchanged") {
      // Replace rather than overwrite in place: a running nkit-cni binary stays intact.
      const tmp = `${p.path}.nkit-tmp`;
      writeFileSync(tmp, p.content, { mode: p.mode });
      chmodSync(tmp, p.mode);
      rmSync(p.path, { force: true });
      writeFileSync(p.path, readFileSync(tmp), { mode: p.mode });
      chmodSync(p.path, p.mode);
      rmSync(tmp, { force: true });
    }
    files.push({ path: p.path, action });
  }
  const containerd = containerdReport(o);
  for (const d of mkdirs(dirname(o.manifest))) directories.add(d);
  const manifest: Manifest = {
    files: planned.map((p) => ({ path: p.path, sha256: sha(p.content) })),
    directories: [...directories],
  };
  writeDocument(o.manifest, manifest, MANIFEST, 0o644);
  const next = [
    "systemctl daemon-reload",
    "systemd-tmpfiles --create nkit.conf",
    "systemctl enable --now nkitd",
  ];
  if (!existsSync(join(o.cniBinDir, "loopback")))
    next.push(
      `put the CNI loopback plugin in ${o.cniBinDir} (Debian: apt install containernetworking-plugins, then nkit install again)`,
    );
  if (containerd.patched) next.push("systemctl restart containerd");
  else if (containerd.nriEnabled === false)
    next.push("enable NRI in containerd: nkit install --patch-containerd");
  return { files, directories: manifest.directories, containerd, manifest: o.manifest, next };
}

interface UninstallReport {
  files: FileReport[];
  directories: string[];
  manifest: string;
  note: string;
}

export function uninstall(o: InstallOptions): UninstallReport {
  const m = readDocument(o.manifest, MANIFEST);
  let entries: { path: string; sha256: string }[];
  if (m) {
    entries = m.files;
  } else {
    // No manifest: remove only files whose content is exactly what install writes today.
    entries = [
      { path: join(o.systemdDir, UNIT_NAME), sha256: sha(unitText(o)) },
      {
        path: join(o.tmpfilesDir, TMPFILES_NAME),
        sha256: sha(readFileSync(join(packageRoot(), "systemd", "nkit.tmpfiles.conf"))),
      },
      { path: join(o.cniConfDir, CONFLIST_NAME), sha256: sha(conflist(o)) },
      ...(existsSync(o.cniPlugin)
        ? [{ path: join(o.cniBinDir, "nkit-cni"), sha256: sha(readFileSync(o.cniPlugin)) }]
        : []),
    ];
  }
  const files: FileReport[] = [];
  for (const e of entries) {
    if (!existsSync(e.path)) {
      files.push({ path: e.path, action: "absent" });
      continue;
    }
    if (sha(readFileSync(e.path)) !== e.sha256) {
      files.push({ path: e.path, action: "kept-modified" });
      continue;
    }
    rmSync(e.path);
    files.push({ path: e.path, action: "removed" });
  }
  if (m) rmSync(o.manifest, { force: true });
  const removedDirs: string[] = [];
  for (const d of [...(m?.directories ?? [])].sort((a, b) => b.length - a.length)) {
    try {
      if (existsSync(d) && readdirSync(d).length === 0) {
        rmdirSync(d);
        removedDirs.push(d);
      }
    } catch {
      // not empty or already gone: leave it
    }
  }
  return {
    files,
    directories: removedDirs,
    manifest: m ? o.manifest : "",
    note: "containerd's config is never reverted automatically: restore the nkit-backup file if `install --patch-containerd` changed it",
  };
}
