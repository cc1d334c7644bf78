// The TS codecs of bpf/include/nkit_shared.h must match the C layout exactly: checked against the
// BTF the compiler recorded in the built objects (no kernel access needed, only the ELF files).
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { BPF } from "../../src/bpf/constants.js";
import { btfStructLayout } from "../../src/bpf/object.js";
import { SHARED_STRUCTS } from "../../src/bpf/shared.js";
import { bpfAddon } from "../../src/native/bpf.js";

const ROOT = join(import.meta.dirname, "..", "..");
const OBJECTS = [
  join(ROOT, "bpf", "build", "counter.bpf.o"),
  join(ROOT, "bpf", "build", "datapath.bpf.o"),
  join(ROOT, "bpf", "build", "test", "maps.bpf.o"),
];

describe("shared struct ABI", () => {
  it("objects are built", () => {
    for (const o of OBJECTS) expect(existsSync(o), `${o} missing: run npm run build:bpf`).toBe(true);
  });

  for (const codec of SHARED_STRUCTS) {
    it(`struct ${codec.name}: size and member offsets match BTF`, () => {
      let seen = 0;
      for (const obj of OBJECTS) {
        const btf = btfStructLayout(obj, codec.name);
        if (!btf) continue;
        seen++;
        expect(btf.size, `${codec.name} size in ${obj}`).toBe(codec.size);
        expect(btf.members.every((m) => m.bitSize === 0)).toBe(true);
        expect(btf.members.map((m) => ({ name: m.name, offset: m.offset, size: m.size }))).toEqual(
          codec.layout.map((m) => ({ name: m.name, offset: m.offset, size: m.size })),
        );
      }
      expect(seen, `no built object records struct ${codec.name}`).toBeGreaterThan(0);
    });
  }

  it("unknown structs are reported as absent", () => {
    expect(btfStructLayout(OBJECTS[0] ?? "", "no_such_struct")).toBeNull();
  });
});

describe("uapi constants", () => {
  it("match the values the addon was compiled with", () => {
    const c = bpfAddon().bpfConstants();
    const expected: Record<string, number> = {
      BPF_TCX_INGRESS: BPF.TCX_INGRESS,
      BPF_TCX_EGRESS: BPF.TCX_EGRESS,
      BPF_NETKIT_PRIMARY: BPF.NETKIT_PRIMARY,
      BPF_NETKIT_PEER: BPF.NETKIT_PEER,
      BPF_LINK_TYPE_TCX: BPF.LINK_TYPE_TCX,
      BPF_LINK_TYPE_NETKIT: BPF.LINK_TYPE_NETKIT,
      BPF_PROG_TYPE_SCHED_CLS: BPF.PROG_TYPE_SCHED_CLS,
      BPF_F_REPLACE: BPF.F_REPLACE,
      BPF_F_BEFORE: BPF.F_BEFORE,
      BPF_F_AFTER: BPF.F_AFTER,
      BPF_F_ID: BPF.F_ID,
      BPF_F_LINK: BPF.F_LINK,
      BPF_ANY: BPF.ANY,
      BPF_NOEXIST: BPF.NOEXIST,
      BPF_EXIST: BPF.EXIST,
      BPF_F_LOCK: BPF.F_LOCK,
      BPF_FUNC_fib_lookup: BPF.FUNC_FIB_LOOKUP,
      BPF_FUNC_redirect_neigh: BPF.FUNC_REDIRECT_NEIGH,
      BPF_FUNC_redirect_peer: BPF.FUNC_REDIRECT_PEER,
    };
    for (const [k, v] of Object.entries(expected)) expect(c[k], k).toBe(v);
  });
});
