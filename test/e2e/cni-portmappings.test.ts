// What a real containerd (lane NKIT_E2E_CONTAINERD=1.7|2) sends a CNI plugin that declares the
// portMappings capability when a CRI client asks for host ports. A capture plugin (a shell script that
// saves its stdin and answers a fixed result) stands in for nkit-cni, so this shows the runtime's
// payload, not ours. The payload must parse with nkit's own validation into the mappings the pod
// asked for, and it must equal the fixture in test/fixtures/cni/ that the unit tests use (run with
// NKIT_UPDATE_FIXTURES=1 to write the fixture from the captured payload instead).
import { randomInt } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseNetConf } from "../../src/cni/protocol.js";
import { RUN_ID } from "../helpers/names.js";
import { writeScript } from "../helpers/sys.js";
import { type ContainerdEnv, laneFromEnv, startContainerd } from "./env/index.js";

const lane = laneFromEnv();
const network = `nkt-e2e-${RUN_ID}-${randomInt(1 << 24).toString(16)}`;
const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures", "cni");

/** The plugin's own conflist keys, which carry per-run paths: replaced by stable text in fixtures. */
function normalize(stdin: Record<string, unknown>): Record<string, unknown> {
  return { ...stdin, name: "nkit", capture: "<capture dir>" };
}

describe(`CNI portMappings as containerd lane ${lane} sends them`, () => {
  let env: ContainerdEnv | undefined;
  const dir = mkdtempSync(join(tmpdir(), `nkt-${RUN_ID}-capture-`));
  const out = join(dir, "out");

  beforeAll(async () => {
    mkdirSync(out);
    const plugin = join(dir, "nkit-capture");
    // Each call saves stdin as <command>-<pid>.json; ADD answers a result with an eth0 address,
    // which is all containerd needs to report the pod IP.
    writeScript(
      plugin,
      `#!/bin/sh
cat > "${out}/$CNI_COMMAND-$$.json"
case "$CNI_COMMAND" in
ADD) printf '{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"%s"}],"ips":[{"address":"10.254.77.2/24","interface":0}]}' "$CNI_NETNS" ;;
VERSION) printf '{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0"]}' ;;
esac
`,
    );
    env = await startContainerd({
      lane,
      name: "portmap-capture",
      cni: {
        systemPlugins: ["loopback"],
        plugins: { "nkit-capture": plugin },
        conflists: [
          {
            file: "10-capture.conflist",
            config: {
              cniVersion: "1.0.0",
              name: network,
              plugins: [
                {
                  type: "nkit-capture",
                  capture: out,
                  capabilities: { portMappings: true },
                },
              ],
            },
          },
        ],
      },
      nri: { enabled: false },
    });
  });

  afterAll(async () => {
    await env?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("sends Go field names (HostPort, ContainerPort, Protocol, HostIP) that nkit parses", async () => {
    const e = env!;
    const pod = await e.runPod({
      name: "hostport",
      portMappings: [
        { protocol: "TCP", containerPort: 80, hostPort: 12000 },
        { protocol: "UDP", containerPort: 53, hostPort: 12053, hostIp: "127.0.0.1" },
        { protocol: "TCP", containerPort: 8080, hostPort: 12080, hostIp: "::1" },
      ],
    });
    await e.stopPod(pod.id);
    await e.removePod(pod.id);
    const files = readdirSync(out);
    const add = files.find((f) => f.startsWith("ADD-"));
    expect(add, `captured: ${files.join(", ")}`).toBeDefined();
    const stdin = JSON.parse(readFileSync(join(out, add!), "utf8")) as Record<string, unknown>;

    const conf = parseNetConf(stdin, "ADD");
    expect(conf.portMappings).toEqual([
      { hostPort: 12000, containerPort: 80, protocol: "tcp" },
      { hostPort: 12053, containerPort: 53, protocol: "udp", hostIP: "127.0.0.1" },
      { hostPort: 12080, containerPort: 8080, protocol: "tcp", hostIP: "::1" },
    ]);
    // DEL carries the same mappings (containerd tears down with the sandbox's config).
    const del = files.find((f) => f.startsWith("DEL-"));
    expect(del).toBeDefined();
    const delConf = parseNetConf(JSON.parse(readFileSync(join(out, del!), "utf8")), "DEL");
    expect(delConf.portMappings).toEqual(conf.portMappings);

    const fixture = join(FIXTURES, `containerd-${e.version.replace(/^v/, "").split("~")[0]}-add.json`);
    if (process.env.NKIT_UPDATE_FIXTURES === "1") {
      writeFileSync(fixture, `${JSON.stringify(normalize(stdin), null, 2)}\n`);
    }
    expect(existsSync(fixture), `${fixture} (NKIT_UPDATE_FIXTURES=1 writes it)`).toBe(true);
    expect(normalize(stdin)).toEqual(JSON.parse(readFileSync(fixture, "utf8")));
  });
});
