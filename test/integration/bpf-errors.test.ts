// Failure paths: broken objects, verifier rejection, missing pins, and netkit on a kernel without
// it. Each case must leave nothing behind (no pins, nothing attached to the device).
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  BpfLink,
  BpfMap,
  BpfObject,
  BpfProgram,
  PinDir,
  probeBtf,
  probeHelper,
  probeNetkit,
  probeTcx,
  queryAttached,
  requireNetkit,
  u32,
  u64,
} from "../../src/bpf/index.js";
import { BpfLoadError, InvalidArgumentError, NotFoundError, NotSupportedError } from "../../src/errors.js";
import { packageFile } from "../../src/package-files.js";
import { HOOK_COUNTERS_MAP, hookCounter, hookKey } from "../helpers/bpf-test-structs.js";
import { uniqueBpffsDir } from "../helpers/names.js";
import { Scope } from "../helpers/scope.js";
import { BAD_VERIFIER_OBJ, COUNTER_OBJ, createDevice, requireBuilt } from "./bpf-fixture.js";

let scope: Scope;
let tmp: string;

beforeAll(() => requireBuilt());

afterEach(async () => {
  await scope.close();
});

function catchErr(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected a failure");
}

function newScope(): Scope {
  scope = new Scope();
  tmp = mkdtempSync(join(tmpdir(), "nkit-bpf-"));
  scope.defer(() => rmSync(tmp, { recursive: true, force: true }));
  return scope;
}

describe("object load failures", () => {
  it("garbage bytes: BpfLoadError with libbpf's ELF reason", () => {
    newScope();
    const pins = new PinDir(uniqueBpffsDir("garbage"));
    scope.defer(() => pins.removeAll());
    const path = join(tmp, "garbage.bpf.o");
    writeFileSync(path, Buffer.from("this is not an ELF file at all, just some bytes\n".repeat(20)));
    const e = catchErr(() => BpfObject.load(path, { pinRoot: pins.root }));
    expect(e).toBeInstanceOf(BpfLoadError);
    expect(e.message).toContain(path);
    expect(e.message).toContain("is not a proper ELF object");
    expect((e as BpfLoadError).log).toContain("libbpf: elf:");
    expect(pins.list()).toEqual([]);
  });

  it("truncated object: BpfLoadError naming the ELF problem", () => {
    newScope();
    const full = readFileSync(COUNTER_OBJ);
    const path = join(tmp, "truncated.bpf.o");
    writeFileSync(path, full.subarray(0, Math.floor(full.length / 2)));
    const e = catchErr(() => BpfObject.load(path));
    expect(e).toBeInstanceOf(BpfLoadError);
    expect(e.message).toMatch(/BPF object format invalid/);
    expect(e.message).toMatch(/elf: failed to get section names/);
  });

  it("missing file: NotFoundError telling how to build it", () => {
    newScope();
    const e = catchErr(() => BpfObject.load(join(tmp, "absent.bpf.o")));
    expect(e).toBeInstanceOf(NotFoundError);
    expect(e.message).toMatch(/build:bpf/);
  });

  it("verifier rejection: BpfLoadError carrying the verifier log", async () => {
    newScope();
    const pins = new PinDir(uniqueBpffsDir("verifier"));
    scope.defer(() => pins.removeAll());
    const dev = await createDevice(scope);
    const e = catchErr(() => BpfObject.load(BAD_VERIFIER_OBJ, { pinRoot: pins.root }));
    expect(e).toBeInstanceOf(BpfLoadError);
    expect(e.message).toMatch(/the verifier rejected program 'nk_bad_packet_read'/);
    expect(e.message).toContain("invalid access to packet");
    const log = (e as BpfLoadError).log;
    expect(log).toContain("BEGIN PROG LOAD LOG");
    expect(log).toContain("R1 offset is outside of the packet");
    expect(pins.list()).toEqual([]);
    expect(queryAttached(dev.ifindex, "tcx-ingress").programs).toEqual([]);
  });

  it("bad pin root: refuses a directory outside bpffs", () => {
    newScope();
    const e = catchErr(() => BpfObject.load(COUNTER_OBJ, { pinRoot: join(tmp, "pins") }));
    expect(e).toBeInstanceOf(NotSupportedError);
    expect(e.message).toMatch(/needs a bpffs mount/);
  });
});

describe("pins", () => {
  it("missing pins are NotFoundError, wrong kinds InvalidArgumentError", () => {
    newScope();
    const pins = new PinDir(uniqueBpffsDir("missing")).ensure();
    scope.defer(() => pins.removeAll());
    const missing = pins.path("no_such_link");
    expect(() => BpfLink.fromPin(missing)).toThrow(NotFoundError);
    expect(() => BpfProgram.fromPin(missing)).toThrow(NotFoundError);
    expect(() => BpfMap.fromPin(missing, u32, u64)).toThrow(NotFoundError);
    expect(catchErr(() => BpfLink.fromPin(missing)).message).toContain(missing);

    const obj = BpfObject.load(COUNTER_OBJ, { pinRoot: pins.root });
    scope.defer(() => obj.close());
    const e = catchErr(() => BpfLink.fromPin(pins.path(HOOK_COUNTERS_MAP)));
    expect(e).toBeInstanceOf(InvalidArgumentError);
    expect(e.message).toMatch(/holds a pinned map, not a link/);
    // a per-CPU map opened as a plain map
    expect(() => BpfMap.fromPin(pins.path(HOOK_COUNTERS_MAP), hookKey, hookCounter)).toThrow(/PerCpuMap/);
    obj.close();
    pins.removeAll();
    expect(pins.exists()).toBe(false);
  });
});

describe("kernel features", () => {
  it("probes report tcx, helpers and BTF as present on the development kernel", () => {
    newScope();
    expect(probeTcx()).toEqual({ supported: true });
    expect(probeHelper("redirect_peer")).toEqual({ supported: true });
    expect(probeHelper("redirect_neigh")).toEqual({ supported: true });
    expect(probeHelper("fib_lookup")).toEqual({ supported: true });
    expect(probeBtf()).toEqual({ supported: true });
  });

  it("netkit: probe says unsupported with the need; attach and query throw NotSupportedError", async () => {
    newScope();
    const netkit = probeNetkit();
    if (process.env.NKIT_VM_LANE) {
      // The VM lane boots a netkit kernel: the probe must say so, and attaching to a device that
      // is not a netkit primary is an ordinary error, not "unsupported".
      expect(netkit.supported).toBe(true);
      const pins = new PinDir(uniqueBpffsDir("netkit"));
      scope.defer(() => pins.removeAll());
      const dev = await createDevice(scope);
      const obj = BpfObject.load(COUNTER_OBJ, { pinRoot: pins.root });
      scope.defer(() => obj.close());
      const e = catchErr(() =>
        BpfLink.attachNetkit(obj.program("nk_count_ingress"), {
          primaryIfindex: dev.ifindex,
          kind: "primary",
        }),
      );
      expect(e).not.toBeInstanceOf(NotSupportedError);
      expect(e.message).toMatch(/ENXIO|No such device or address/);
      return;
    }
    // The development kernel has no CONFIG_NETKIT (see reference/datapath-lab.md).
    expect(netkit.supported).toBe(false);
    if (netkit.supported) return;
    expect(netkit.need).toBe("Linux >= 6.7 built with CONFIG_NETKIT=y");
    expect(netkit.reason).toMatch(/EINVAL/);
    const req = catchErr(() => requireNetkit());
    expect(req).toBeInstanceOf(NotSupportedError);
    expect(req.message).toMatch(
      /^netkit devices is not supported on this host: needs Linux >= 6\.7 built with CONFIG_NETKIT=y/,
    );

    const pins = new PinDir(uniqueBpffsDir("netkit"));
    scope.defer(() => pins.removeAll());
    const dev = await createDevice(scope);
    const obj = BpfObject.load(COUNTER_OBJ, { pinRoot: pins.root });
    scope.defer(() => obj.close());
    for (const kind of ["primary", "peer"] as const) {
      const e = catchErr(() =>
        BpfLink.attachNetkit(obj.program("nk_count_ingress"), { primaryIfindex: dev.ifindex, kind }),
      );
      expect(e).toBeInstanceOf(NotSupportedError);
      expect((e as NotSupportedError).feature).toBe("netkit devices");
      expect(e.message).toContain("CONFIG_NETKIT=y");
    }
    expect(() => queryAttached(dev.ifindex, "netkit-primary")).toThrow(NotSupportedError);
    obj.close();
    expect(queryAttached(dev.ifindex, "tcx-ingress").programs).toEqual([]);
    expect(queryAttached(dev.ifindex, "tcx-egress").programs).toEqual([]);
    pins.removeAll();
    expect(pins.exists()).toBe(false);
  });

  it("tcx attach to a missing ifindex is NotFoundError", () => {
    newScope();
    const pins = new PinDir(uniqueBpffsDir("noif"));
    scope.defer(() => pins.removeAll());
    const obj = BpfObject.load(COUNTER_OBJ, { pinRoot: pins.root });
    scope.defer(() => obj.close());
    const e = catchErr(() =>
      BpfLink.attachTcx(obj.program("nk_count_ingress"), { ifindex: 0x7ffffff0, direction: "ingress" }),
    );
    expect(e).toBeInstanceOf(NotFoundError);
    expect(e.message).toMatch(/no network device with ifindex/);
  });
});

describe("loading under a storm of signals", () => {
  // The verifier stops with EAGAIN when a signal is pending for the loading thread; a busy nkitd
  // gets many (children exiting, a profiler's SIGPROF). Loading blocks them for its duration.
  it("loads the datapath object while another process signals this one nonstop", async () => {
    newScope();
    const onSignal = () => undefined;
    process.on("SIGUSR2", onSignal);
    const storm = spawn("sh", ["-c", `while kill -USR2 ${process.pid} 2>/dev/null; do :; done`], {
      stdio: "ignore",
    });
    try {
      await new Promise((r) => setTimeout(r, 200));
      const path = packageFile(join("bpf", "build", "datapath.bpf.o"));
      expect(path).toBeDefined();
      for (let i = 0; i < 5; i++) {
        const pins = uniqueBpffsDir("sig");
        scope.defer(() => rmSync(pins, { recursive: true, force: true }));
        BpfObject.load(path as string, { pinRoot: pins }).close();
      }
    } finally {
      storm.kill("SIGKILL");
      process.off("SIGUSR2", onSignal);
    }
  });
});
