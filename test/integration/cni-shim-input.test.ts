// The real nkit-cni binary on its own: its tables against the TypeScript side (so the two cannot
// drift), every error code it emits reached through a real failure, and hostile stdin/environment
// run through its ASan+UBSan build (the shim runs as root on every pod start).
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CniCode } from "../../src/cni/codes.js";
import { SUPPORTED_VERSIONS } from "../../src/cni/protocol.js";

const ROOT = join(import.meta.dirname, "..", "..");
const CNI_DIR = join(ROOT, "native", "cni");
const SHIM = join(CNI_DIR, "build", "nkit-cni");
const SHIM_SAN = join(CNI_DIR, "build", "nkit-cni-san");
const INPUTS = join(ROOT, "test", "fixtures", "cni", "shim-inputs");

interface Run {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function runShim(binary: string, env: Record<string, string>, stdin: string | Buffer): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, [], {
      // Only the CNI environment, as runtimes call plugins; the shim never frees (short-lived),
      // so leak reports would be noise, while every other sanitizer report is fatal.
      env: { PATH: "/usr/bin:/bin", ASAN_OPTIONS: "detect_leaks=0:abort_on_error=0", ...env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    child.once("error", reject);
    child.once("close", (status, signal) => resolve({ status, signal, stdout, stderr }));
    child.stdin.on("error", () => undefined); // the shim may exit before reading everything
    child.stdin.end(stdin);
  });
}

let dir: string;
let missing: string; // a socket path nothing listens on
const servers: Server[] = [];
const sockets = new Set<Socket>();

function listen(path: string, onConnection: (s: Socket) => void): Promise<void> {
  const srv = createServer((s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => undefined);
    onConnection(s);
  });
  servers.push(srv);
  return new Promise((r) => srv.listen(path, r));
}

beforeAll(() => {
  execFileSync("make", ["-s", "-C", CNI_DIR, "build/nkit-cni", "build/nkit-cni-san"]);
  dir = mkdtempSync(join(tmpdir(), "nkit-cni-input-"));
  missing = join(dir, "absent", "cni.sock");
});

afterAll(async () => {
  for (const s of sockets) s.destroy();
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  rmSync(dir, { recursive: true, force: true });
});

const cniEnv = (command: string, extra: Record<string, string> = {}) => ({
  CNI_COMMAND: command,
  CNI_CONTAINERID: "input-test",
  CNI_NETNS: "/proc/self/ns/net",
  CNI_IFNAME: "eth0",
  CNI_ARGS: "IgnoreUnknown=1",
  CNI_PATH: "/opt/cni/bin",
  ...extra,
});

const conf = (o: Record<string, unknown> = {}) =>
  JSON.stringify({ cniVersion: "1.1.0", name: "nkit", type: "nkit-cni", socket: missing, ...o });

function errorCode(r: Run): number | undefined {
  try {
    const parsed = JSON.parse(r.stdout) as { code?: unknown };
    return typeof parsed.code === "number" ? parsed.code : undefined;
  } catch {
    return undefined;
  }
}

/** Exit 0, or exit 1 with CNI error JSON on stdout; no signal, no sanitizer report. */
function answered(r: Run): boolean {
  const ok = r.status === 0 || (r.status === 1 && Number.isInteger(errorCode(r)));
  return ok && r.signal === null && !/Sanitizer|runtime error/.test(r.stderr);
}

describe("nkit-cni tables", () => {
  it("prints the versions and error codes that src/cni/protocol.ts and src/cni/codes.ts define", async () => {
    const about = await runShim(SHIM, {}, "");
    expect(about.status).toBe(0);
    const versions = /^CNI protocol versions supported: (.*)$/m.exec(about.stdout)?.[1];
    expect(versions?.split(", ")).toEqual([...SUPPORTED_VERSIONS]);
    const codes = /^Error codes: (.*)$/m.exec(about.stdout)?.[1];
    expect(codes).toBeDefined();
    for (const entry of codes!.split(", ")) {
      const [value, name] = entry.split(" ");
      expect(CniCode, `nkit-cni's code ${entry} is not in src/cni/codes.ts`).toHaveProperty(
        name!,
        Number(value),
      );
    }
    const version = await runShim(SHIM, cniEnv("VERSION"), '{"cniVersion":"0.4.0"}');
    expect(JSON.parse(version.stdout)).toEqual({
      cniVersion: "0.4.0",
      supportedVersions: [...SUPPORTED_VERSIONS],
    });
  });

  it("reaches every error code it declares through a real failure", async () => {
    const garbage = join(dir, "garbage.sock");
    await listen(garbage, (s) => s.end("this is not json\n"));
    // One real way to each code; a code added to the shim without a case here fails the test.
    const cases: Record<string, () => Promise<Run>> = {
      INCOMPATIBLE_VERSION: () => runShim(SHIM, cniEnv("ADD"), conf({ cniVersion: "0.2.0" })),
      INVALID_ENV: () => runShim(SHIM, cniEnv("ADD", { CNI_NETNS: "" }), conf()),
      IO: () => runShim(SHIM, cniEnv("ADD"), Buffer.alloc((1 << 20) + 2, " ")),
      DECODE: () => runShim(SHIM, cniEnv("ADD"), '{"cniVersion":"1.1.0",'),
      INVALID_CONFIG: () => runShim(SHIM, cniEnv("ADD"), conf({ timeoutMs: "soon" })),
      TRY_AGAIN: () => runShim(SHIM, cniEnv("ADD"), conf()),
      STATUS_UNAVAILABLE: () => runShim(SHIM, cniEnv("STATUS"), conf()),
      PROTOCOL: () => runShim(SHIM, cniEnv("ADD"), conf({ socket: garbage })),
    };
    const about = await runShim(SHIM, {}, "");
    const declared = (/^Error codes: (.*)$/m.exec(about.stdout)?.[1] ?? "")
      .split(", ")
      .map((e) => e.split(" ")[1]);
    expect(Object.keys(cases).sort()).toEqual([...declared].sort());
    for (const [name, run] of Object.entries(cases)) {
      const r = await run();
      expect({ name, status: r.status, code: errorCode(r) }).toEqual({
        name,
        status: 1,
        code: CniCode[name as keyof typeof CniCode],
      });
    }
  });
});

/** Inputs that have broken JSON scanners; each must get an answer, never a crash. */
function hostileInputs(): [string, string | Buffer][] {
  const valid = conf({ mode: "wire", args: { cni: { ips: ["10.47.0.9"] } } });
  const inputs: [string, string | Buffer][] = [];
  for (const f of readdirSync(INPUTS)) inputs.push([`fixture ${f}`, readFileSync(join(INPUTS, f))]);
  for (const key of ["cniVersion", "socket", "name", "type", "mode", ""]) {
    inputs.push([
      `empty string for ${JSON.stringify(key)}`,
      JSON.stringify({ cniVersion: "1.1.0", [key]: "" }),
    ]);
  }
  inputs.push(["empty object", "{}"], ["empty input", ""], ["only whitespace", " \n\t "]);
  inputs.push(["long string value", conf({ name: "x".repeat(900_000) })]);
  inputs.push(["long socket path", conf({ socket: `/${"s".repeat(4096)}` })]);
  inputs.push(["many escapes", `{"cniVersion":"1.1.0","name":"${'\\n\\"\\\\\\u00e9'.repeat(60_000)}"}`]);
  inputs.push(["escape at the very end", '{"cniVersion":"1.1.0","name":"abc\\']);
  inputs.push(["truncated \\u escape", '{"cniVersion":"1.1.0","name":"\\u12']);
  for (const u of [
    "\\ud83d",
    "\\ude00",
    "\\ud83d\\u0041",
    "\\ud83d\\ude00",
    "\\u0000",
    "\\uffff",
    "\\uZZZZ",
  ]) {
    inputs.push([`unicode escape ${u}`, `{"cniVersion":"1.1.0","socket":"${dir}/${u}","name":"${u}"}`]);
  }
  for (const depth of [127, 128, 129, 5000]) {
    inputs.push([`nesting ${depth}`, `{"cniVersion":"1.1.0","a":${"[".repeat(depth)}${"]".repeat(depth)}}`]);
    inputs.push([`unclosed nesting ${depth}`, `{"cniVersion":"1.1.0","a":${'{"b":'.repeat(depth)}`]);
  }
  const members = Array.from({ length: 200 }, (_, i) => `"k${i}":${i}`).join(",");
  inputs.push(["200 members", `{${members},"cniVersion":"1.1.0"}`]);
  for (const len of [62, 63, 64, 65, 1000])
    inputs.push([`key of ${len} bytes`, `{"${"k".repeat(len)}":1,"cniVersion":"1.1.0"}`]);
  inputs.push(["repeated keys", `{"cniVersion":"0.1","cniVersion":"1.1.0","socket":1,"socket":"${dir}/x"}`]);
  inputs.push(["NUL byte in a string", Buffer.from('{"cniVersion":"1.1.0","name":"a\0b"}')]);
  inputs.push([
    "invalid UTF-8",
    Buffer.concat([
      Buffer.from('{"cniVersion":"1.1.0","name":"'),
      Buffer.from([0xff, 0xc3, 0x28]),
      Buffer.from('"}'),
    ]),
  ]);
  for (const n of ["-", "01", "1.", "1e", "-0.0e+5", "1".repeat(5000)])
    inputs.push([`number ${n}`, conf({}).replace('"name"', `"n":${n},"name"`)]);
  inputs.push(["timeoutMs huge", conf({}).replace('"name"', `"timeoutMs":${"9".repeat(400)},"name"`)]);
  // every prefix of a valid configuration, sampled so the run stays short under the sanitizers
  for (let len = 0; len < valid.length; len += 7) inputs.push([`prefix ${len}`, valid.slice(0, len)]);
  return inputs;
}

describe("nkit-cni under ASan+UBSan", () => {
  it("answers hostile stdin with a CNI error or a result, never a crash", async () => {
    const failures: string[] = [];
    const inputs = hostileInputs();
    // a few at a time: each sanitizer run costs tens of milliseconds
    for (let i = 0; i < inputs.length; i += 4) {
      await Promise.all(
        inputs.slice(i, i + 4).map(async ([label, stdin]) => {
          for (const command of ["ADD", "DEL", "VERSION"]) {
            const r = await runShim(SHIM_SAN, cniEnv(command), stdin);
            if (!answered(r)) {
              failures.push(
                `${label} (${command}): status ${r.status} signal ${r.signal}\n${r.stderr.slice(0, 2000)}`,
              );
            }
          }
        }),
      );
    }
    expect(failures).toEqual([]);
  });

  it("answers hostile environments the same way", async () => {
    const long = "x".repeat(100_000); // under MAX_ARG_STRLEN (128 KiB per variable)
    const envs: Record<string, string>[] = [
      { CNI_ARGS: `K8S_POD_NAME=${long};"\\\u0001\u007f` },
      { CNI_CONTAINERID: long },
      { CNI_IFNAME: '\u001b[31m"\\' },
      { CNI_PATH: long },
      { CNI_NETNS: long },
      { CNI_COMMAND: long },
    ];
    for (const extra of envs) {
      for (const command of ["ADD", "DEL", "GC", "CHECK", "STATUS"]) {
        const r = await runShim(SHIM_SAN, cniEnv(command, extra), conf());
        expect(
          answered(r),
          `${command} ${Object.keys(extra).join()}: ${r.status} ${r.stderr.slice(0, 2000)}`,
        ).toBe(true);
      }
    }
  });

  it("reports the empty cniVersion of the fuzzer's crash input as unsupported (regression)", async () => {
    const input = readFileSync(join(INPUTS, "empty-string-heap-overflow.json"));
    const r = await runShim(SHIM_SAN, cniEnv("ADD"), input);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({
      code: CniCode.INCOMPATIBLE_VERSION,
      msg: 'CNI version "" is not supported by nkit-cni',
    });
  });
});
