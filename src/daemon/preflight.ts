// Checks nkitd runs before it creates anything: every configured path, device and address it will
// use, so a config it cannot run with is refused up front (exit 2, the key named) instead of
// failing half-way with a stack trace, hanging, or leaving a state dir and pinned maps behind.
import { accessSync, constants, statSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join, sep } from "node:path";
import { ConfigError } from "../errors.js";
import { Rtnl } from "../netlink/index.js";
import type { NkitdConfig } from "./config.js";

/** sun_path holds 108 bytes with the NUL; the API socket is bound at <run>/.nkit-sock-XXXXXX/s first. */
const SUN_PATH_MAX = 107;
const API_BIND_SUFFIX = "/.nkit-sock-XXXXXX/s".length;
/** A pin path adds at most this much below paths.bpffs (endpoints/<15-char dev>/from-container). */
const PIN_SUFFIX = "/endpoints/123456789012345/from-container".length;
const PATH_MAX = 4095;
const NAME_MAX = 255;

function statOf(path: string): ReturnType<typeof statSync> | undefined {
  try {
    return statSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return undefined;
    if (code === "ENOTDIR") return undefined; // a parent is a file: reported by the ancestor walk
    throw e;
  }
}

/**
 * A directory nkitd creates when missing: it must be a directory if it exists, and otherwise its
 * nearest existing ancestor must be a directory nkitd can write (a path under /proc, a file, or a
 * read-only mount is refused here rather than at the first mkdir).
 */
function checkDirPath(key: string, path: string, create: boolean): void {
  for (const part of path.split(sep)) {
    if (Buffer.byteLength(part) > NAME_MAX) {
      throw new ConfigError(
        key,
        `a component of ${path} is longer than ${NAME_MAX} bytes`,
        "use shorter names",
      );
    }
  }
  const st = statOf(path);
  if (st) {
    if (!st.isDirectory()) {
      throw new ConfigError(
        key,
        `${path} exists and is not a directory`,
        "point it at a directory (or a path that does not exist yet)",
      );
    }
    return;
  }
  if (!create) return;
  let ancestor = dirname(path);
  while (!statOf(ancestor)) ancestor = dirname(ancestor);
  const a = statSync(ancestor);
  if (!a.isDirectory()) {
    throw new ConfigError(
      key,
      `${ancestor} (a parent of ${path}) is not a directory`,
      "point it at a directory",
    );
  }
  if (ancestor === "/proc" || ancestor.startsWith("/proc/")) {
    throw new ConfigError(
      key,
      `${path} lies in /proc, where no directory can be created`,
      "use a path on a real file system",
    );
  }
  try {
    accessSync(ancestor, constants.W_OK);
  } catch (e) {
    throw new ConfigError(
      key,
      `cannot create ${path}: ${ancestor} is not writable (${(e as NodeJS.ErrnoException).code})`,
      "use a writable location",
    );
  }
}

async function checkListen(listen: string): Promise<void> {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(listen);
  const host = m?.[1] ?? m?.[2] ?? "";
  const port = Number(m?.[3]);
  // A trial bind answers "is this an address of this host, and is the port free" exactly.
  await new Promise<void>((resolve, reject) => {
    const srv = createServer();
    srv.once("error", (e: NodeJS.ErrnoException) => {
      const fix =
        e.code === "EADDRINUSE"
          ? "pick a free port"
          : e.code === "EADDRNOTAVAIL"
            ? "use an address this host has, e.g. 127.0.0.1"
            : "check the address";
      reject(new ConfigError("metrics.listen", `cannot listen on ${listen}: ${e.code ?? e.message}`, fix));
    });
    srv.listen(port, host, () => srv.close(() => resolve()));
  });
}

export async function preflight(config: NkitdConfig): Promise<void> {
  const p = config.paths;
  checkDirPath("paths.state", p.state, true);
  checkDirPath("paths.run", p.run, true);
  checkDirPath("paths.bpffs", p.bpffs, true);
  checkDirPath("paths.services", p.services, false);
  if (p.cgroup) {
    const st = statOf(p.cgroup);
    if (!st?.isDirectory()) {
      throw new ConfigError(
        "paths.cgroup",
        `${p.cgroup} is not an existing cgroup v2 directory`,
        'create it, or use "" for the host\'s cgroup2 mount',
      );
    }
  }
  const longest = Buffer.byteLength(join(p.run, "nkit.sock"));
  if (Buffer.byteLength(p.run) + API_BIND_SUFFIX > SUN_PATH_MAX || longest > SUN_PATH_MAX) {
    throw new ConfigError(
      "paths.run",
      `${p.run} is too long for unix sockets (${Buffer.byteLength(p.run)} bytes; at most ${SUN_PATH_MAX - API_BIND_SUFFIX})`,
      "use a shorter directory, e.g. /run/nkit",
    );
  }
  if (Buffer.byteLength(p.bpffs) + PIN_SUFFIX > PATH_MAX) {
    throw new ConfigError(
      "paths.bpffs",
      `${p.bpffs} is too long for pin paths`,
      "use a shorter directory, e.g. /sys/fs/bpf/nkit",
    );
  }
  if (config.uplinks.length > 0) {
    const host = await Rtnl.host();
    try {
      for (const [i, name] of config.uplinks.entries()) {
        if (!(await host.getLink(name))) {
          throw new ConfigError(
            `uplinks[${i}]`,
            `this host has no network device ${name}`,
            "list devices of this host (ip link), or [] for the default-route devices",
          );
        }
      }
    } finally {
      await host.close();
    }
  }
  if (config.metrics.listen) await checkListen(config.metrics.listen);
}
