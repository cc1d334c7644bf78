import { defineConfig } from "vitest/config";
import { VM_LANE_EXCLUDE, vmLaneTests } from "./test/vm/lane.js";

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "unit",
          include: ["test/unit/**/*.test.ts"],
          environment: "node",
        },
      },
      {
        test: {
          name: "integration",
          include: ["test/integration/**/*.test.ts"],
          environment: "node",
          // Real kernel objects: one file at a time, in forked processes, with a leak check at the end.
          pool: "forks",
          fileParallelism: false,
          globalSetup: ["test/helpers/integration-global.ts"],
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
      {
        test: {
          name: "e2e",
          include: ["test/e2e/**/*.test.ts"],
          environment: "node",
          // Each suite runs its own containerd (lane: NKIT_E2E_CONTAINERD=1.7|2); one file at a time on 2 cores.
          pool: "forks",
          fileParallelism: false,
          globalSetup: ["test/e2e/global-setup.ts"],
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
      {
        test: {
          name: "nomad",
          include: ["test/nomad/**/*.test.ts"],
          environment: "node",
          // A real Nomad agent (scripts/nomad-lane.sh): one file at a time, real kernel objects.
          pool: "forks",
          fileParallelism: false,
          globalSetup: ["test/helpers/integration-global.ts"],
          testTimeout: 240_000,
          hookTimeout: 240_000,
        },
      },
      {
        test: {
          name: "fuzz",
          // Property-based fuzz targets (fast-check): NKIT_FUZZ_RUNS cases each (scripts/fuzz.sh).
          include: ["test/fuzz/**/*.fuzz.test.ts"],
          environment: "node",
          testTimeout: 3_600_000,
        },
      },
      {
        test: {
          name: "package",
          include: ["test/package/**/*.test.ts"],
          environment: "node",
          // The packages scripts/package.sh built, in fresh Debian 12 roots (chroot, real kernel objects).
          pool: "forks",
          fileParallelism: false,
          globalSetup: ["test/helpers/integration-global.ts"],
          testTimeout: 900_000,
          hookTimeout: 300_000,
        },
      },
      // The netkit VM lane: defined only inside its guest (scripts/vm/guest-init.sh sets NKIT_VM_LANE),
      // so a plain `vitest run` on a host without netkit never picks these tests up.
      ...(process.env.NKIT_VM_LANE
        ? [
            {
              test: {
                name: "vm",
                include: vmLaneTests(),
                // an explicit NKIT_VM_TESTS list runs exactly what it names
                exclude: process.env.NKIT_VM_TESTS ? [] : [...VM_LANE_EXCLUDE],
                environment: "node" as const,
                pool: "forks" as const,
                fileParallelism: false,
                // one forked process runs every file in turn: under TCG, starting a fork and
                // re-importing src/ per file costs seconds
                isolate: false,
                globalSetup: ["test/helpers/integration-global.ts"],
                // TCG runs CPU-bound work about 10x slower than the host
                testTimeout: 180_000,
                hookTimeout: 180_000,
              },
            },
          ]
        : []),
    ],
  },
});
