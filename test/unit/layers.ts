// The layering rule of src/: which folder may import which. test/unit/layering.test.ts enforces it
// on the real import graph, and docs/architecture.md ("Layers") explains it. A new folder of src/
// (src/services, src/nat, ...) is one new row here, listing what it may import; the folders that
// use it add it to their own row.

export interface Layer {
  /** Folder under src/. */
  folder: string;
  /** Other src/ folders its modules may import (any module of the folder imports its own freely;
   * the ROOT_MODULES are open to all). */
  mayImport: readonly string[];
}

/** src/*.ts: importable from everywhere; they import nothing of src/ but each other. */
export const ROOT_MODULES: readonly string[] = ["errors.ts", "log.ts", "package-files.ts", "version.ts"];

/** From the bottom up: a row may only name rows above it, so the graph has no cycles. */
export const LAYERS: readonly Layer[] = [
  // Foundations.
  { folder: "util", mayImport: [] },
  { folder: "state", mayImport: ["util"] },
  // The addon's typed slices: only the kernel/OS-facing layers below touch it.
  { folder: "native", mayImport: [] },
  { folder: "bpf", mayImport: ["native", "util"] },
  { folder: "netlink", mayImport: ["native", "util"] },
  { folder: "systemd", mayImport: ["native"] },
  { folder: "process", mayImport: ["native"] },
  { folder: "ttrpc", mayImport: [] },
  { folder: "nri", mayImport: ["ttrpc"] },
  { folder: "containerd", mayImport: [] },
  // Owners of host state and kernel objects.
  { folder: "ipam", mayImport: ["state", "util"] },
  { folder: "datapath", mayImport: ["bpf", "netlink", "state", "util"] },
  { folder: "pods", mayImport: ["datapath", "ipam"] },
  { folder: "services", mayImport: ["bpf", "state", "util"] },
  { folder: "conntrack", mayImport: ["bpf"] },
  { folder: "masquerade", mayImport: ["bpf", "conntrack", "util"] },
  // Front doors and consumers of the owners.
  { folder: "nomad", mayImport: ["services", "state", "util"] },
  { folder: "cni", mayImport: ["datapath", "ipam", "netlink", "pods", "state", "util"] },
  { folder: "metrics", mayImport: ["datapath"] },
  { folder: "api", mayImport: ["bpf", "datapath", "ipam", "pods", "masquerade", "metrics", "services"] },
  // Composition roots.
  {
    folder: "daemon",
    mayImport: [
      "util",
      "state",
      "bpf",
      "netlink",
      "systemd",
      "process",
      "nri",
      "containerd",
      "nomad",
      "ipam",
      "datapath",
      "pods",
      "services",
      "conntrack",
      "masquerade",
      "cni",
      "metrics",
      "api",
    ],
  },
  {
    folder: "cli",
    mayImport: ["util", "state", "bpf", "ipam", "datapath", "pods", "services", "cni", "api"],
  },
];

/** npm packages that only one folder may import: everything else goes through that folder. */
export const OWNED_PACKAGES: Readonly<Record<string, readonly string[]>> = {
  netlink: ["netlink"],
  // nkit's own API, and the client of containerd's.
  "@grpc/grpc-js": ["api", "containerd"],
  "prom-client": ["metrics"],
};
