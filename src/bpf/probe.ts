// Kernel feature probes. Each returns {supported: true} or says why not and what would provide it;
// the require* variants throw NotSupportedError with that text. Probes leave nothing behind: the
// link probes aim BPF_LINK_CREATE at an ifindex that cannot exist, the way cilium/ebpf does.
import { existsSync } from "node:fs";
import { constants } from "node:os";
import { BpfError, NotSupportedError } from "../errors.js";
import { bpfAddon } from "../native/bpf.js";
import { errnoName } from "../util/errno.js";
import { BPF } from "./constants.js";
import { nativeCall } from "./errors.js";

export type ProbeResult = { supported: true } | { supported: false; reason: string; need: string };

type HelperName = "redirect_peer" | "redirect_neigh" | "fib_lookup";

interface Feature {
  feature: string;
  need: string;
  probe: () => ProbeResult;
}

const cache = new Map<string, ProbeResult>();

const ENODEV = constants.errno.ENODEV;

function linkCreateProbe(attachType: number, label: string, need: string): ProbeResult {
  const err = nativeCall(`probing ${label}`, () => bpfAddon().probeLinkCreate(attachType));
  // ENODEV: the kernel dispatched the attach type and only then failed to find the device
  if (err === 0 || err === ENODEV) return { supported: true };
  if (err === constants.errno.EPERM || err === constants.errno.EACCES) {
    throw new BpfError(
      `probing ${label}: ${errnoName(err)}: needs root (or CAP_BPF + CAP_NET_ADMIN) to load the probe program`,
      errnoName(err),
    );
  }
  return {
    supported: false,
    reason: `BPF_LINK_CREATE for ${label} failed with ${errnoName(err)} (a kernel with ${label} reports ENODEV for this probe)`,
    need,
  };
}

const HELPER_NEED: Record<HelperName, { id: number; need: string }> = {
  redirect_peer: {
    id: BPF.FUNC_REDIRECT_PEER,
    need: "Linux >= 5.10 (bpf_redirect_peer for sched_cls programs)",
  },
  redirect_neigh: {
    id: BPF.FUNC_REDIRECT_NEIGH,
    need: "Linux >= 5.10 (bpf_redirect_neigh for sched_cls programs)",
  },
  fib_lookup: { id: BPF.FUNC_FIB_LOOKUP, need: "Linux >= 4.18 (bpf_fib_lookup for sched_cls programs)" },
};

const FEATURES = {
  netkit: {
    feature: "netkit devices",
    need: "Linux >= 6.7 built with CONFIG_NETKIT=y",
    probe: () =>
      linkCreateProbe(
        BPF.NETKIT_PRIMARY,
        "netkit attach (BPF_NETKIT_PRIMARY)",
        "Linux >= 6.7 built with CONFIG_NETKIT=y",
      ),
  },
  tcx: {
    feature: "tcx links",
    need: "Linux >= 6.6 (tcx BPF links)",
    probe: () =>
      linkCreateProbe(BPF.TCX_INGRESS, "tcx attach (BPF_TCX_INGRESS)", "Linux >= 6.6 (tcx BPF links)"),
  },
  btf: {
    feature: "kernel BTF",
    need: "a kernel built with CONFIG_DEBUG_INFO_BTF=y (/sys/kernel/btf/vmlinux)",
    probe: (): ProbeResult =>
      existsSync("/sys/kernel/btf/vmlinux")
        ? { supported: true }
        : {
            supported: false,
            reason: "/sys/kernel/btf/vmlinux does not exist",
            need: "a kernel built with CONFIG_DEBUG_INFO_BTF=y (/sys/kernel/btf/vmlinux)",
          },
  },
} satisfies Record<string, Feature>;

function helperFeature(name: HelperName): Feature {
  const h = HELPER_NEED[name];
  return {
    feature: `BPF helper bpf_${name}`,
    need: h.need,
    probe: () =>
      nativeCall(`probing BPF helper bpf_${name}`, () =>
        bpfAddon().probeHelper(BPF.PROG_TYPE_SCHED_CLS, h.id),
      )
        ? { supported: true }
        : { supported: false, reason: `the kernel rejects bpf_${name} in sched_cls programs`, need: h.need },
  };
}

function run(key: string, f: Feature): ProbeResult {
  let r = cache.get(key);
  if (!r) {
    r = f.probe();
    cache.set(key, r);
  }
  return r;
}

function requireFeature(key: string, f: Feature): void {
  const r = run(key, f);
  if (!r.supported) throw new NotSupportedError(f.feature, `${r.need} (${r.reason})`);
}

export const probeNetkit = (): ProbeResult => run("netkit", FEATURES.netkit);
export const probeTcx = (): ProbeResult => run("tcx", FEATURES.tcx);
export const probeBtf = (): ProbeResult => run("btf", FEATURES.btf);
export const probeHelper = (name: HelperName): ProbeResult => run(`helper:${name}`, helperFeature(name));

export const requireNetkit = (): void => requireFeature("netkit", FEATURES.netkit);

/** Feature name and need, e.g. for building NotSupportedError elsewhere. */
export const NETKIT_FEATURE = { feature: FEATURES.netkit.feature, need: FEATURES.netkit.need } as const;
export const TCX_FEATURE = { feature: FEATURES.tcx.feature, need: FEATURES.tcx.need } as const;

/** Every probe, for `nkit doctor`. */
export function probeAll(): Record<string, ProbeResult> {
  return {
    netkit: probeNetkit(),
    tcx: probeTcx(),
    btf: probeBtf(),
    redirect_peer: probeHelper("redirect_peer"),
    redirect_neigh: probeHelper("redirect_neigh"),
    fib_lookup: probeHelper("fib_lookup"),
  };
}
