// The TS codecs of the nkit headers (bpf/include/nkit_*.h, bpf/test/nkit_test.h) must match the C
// layout exactly, and the maps the TS side opens must exist in the objects with the type and sizes
// it expects: checked against the BTF and the map definitions the compiler recorded in the built
// objects (no kernel access needed, only the ELF files). One row per object; a new header or object
// adds a row.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { StructCodec } from "../../src/bpf/codec.js";
import { BPF } from "../../src/bpf/constants.js";
import { DATAPATH_MAP_LAYOUTS } from "../../src/bpf/datapath.js";
import * as datapathAbi from "../../src/bpf/gen/nkit_datapath.js";
import * as lbAbi from "../../src/bpf/gen/nkit_lb.js";
import * as natAbi from "../../src/bpf/gen/nkit_nat.js";
import * as sharedAbi from "../../src/bpf/gen/nkit_shared.js";
import { LB_MAP_LAYOUTS, LB_PACKET_MAP_LAYOUTS, LB_PROGRAM } from "../../src/bpf/lb.js";
import type { MapLayout } from "../../src/bpf/map.js";
import { NAT_MAP_LAYOUTS } from "../../src/bpf/nat.js";
import { BpfObject, btfStructLayout } from "../../src/bpf/object.js";
import { PROGRAM } from "../../src/datapath/programs.js";
import { bpfAddon } from "../../src/native/bpf.js";
import { COUNTER_MAP_LAYOUTS, TEST_STRUCTS } from "../helpers/bpf-test-structs.js";

const BUILD = join(import.meta.dirname, "..", "..", "bpf", "build");

interface ObjectAbi {
  /** Path under bpf/build. */
  object: string;
  /** Structs the object must record in its BTF exactly as the codecs lay them out. */
  structs: readonly StructCodec<unknown>[];
  /** Maps the TS side opens by name from the object or its pins (every one pinned by name). */
  maps: readonly MapLayout[];
  /** Programs the TS side gets by name. */
  programs: readonly string[];
}

const OBJECTS: readonly ObjectAbi[] = [
  {
    object: "datapath.bpf.o",
    structs: [],
    maps: [...DATAPATH_MAP_LAYOUTS, ...LB_PACKET_MAP_LAYOUTS, ...NAT_MAP_LAYOUTS],
    programs: Object.values(PROGRAM),
  },
  {
    object: "sock_lb.bpf.o",
    structs: [],
    maps: LB_MAP_LAYOUTS,
    programs: Object.values(LB_PROGRAM),
  },
  {
    object: "test/counter.bpf.o",
    structs: TEST_STRUCTS,
    maps: COUNTER_MAP_LAYOUTS,
    programs: ["nk_count_ingress", "nk_count_egress", "nk_count_ingress_alt", "nk_count_egress_alt"],
  },
  // maps.bpf.o has no pinned maps; its nk_hook_* structs must agree with the counter fixture's.
  { object: "test/maps.bpf.o", structs: TEST_STRUCTS, maps: [], programs: [] },
];

const pathOf = (o: ObjectAbi): string => join(BUILD, o.object);

function expectLayout(obj: string, codec: StructCodec<unknown>): void {
  const btf = btfStructLayout(obj, codec.name);
  expect(btf, `${obj} records no struct ${codec.name}`).not.toBeNull();
  if (!btf) return;
  expect(btf.size, `${codec.name} size in ${obj}`).toBe(codec.size);
  expect(btf.members.every((m) => m.bitSize === 0)).toBe(true);
  expect(btf.members.map((m) => ({ name: m.name, offset: m.offset, size: m.size }))).toEqual(
    codec.layout.map((m) => ({ name: m.name, offset: m.offset, size: m.size })),
  );
}

describe("shared struct ABI", () => {
  it("objects are built", () => {
    for (const o of OBJECTS)
      expect(existsSync(pathOf(o)), `${pathOf(o)} missing: run npm run build:bpf`).toBe(true);
  });

  for (const o of OBJECTS) {
    for (const codec of o.structs) {
      it(`${o.object}: struct ${codec.name} size and member offsets match BTF`, () => {
        expectLayout(pathOf(o), codec);
      });
    }
  }

  // The product's codecs are generated from these objects' BTF at build time (bpf/gen-abi.mjs);
  // these checks catch a generated file older than the headers or objects.
  const PRODUCT = [pathOf(OBJECTS[0]!), pathOf(OBJECTS[1]!)];
  const GENERATED = new Map<string, readonly StructCodec<unknown>[]>([
    ["nkit_datapath.h", datapathAbi.STRUCTS],
    ["nkit_lb.h", lbAbi.STRUCTS],
    ["nkit_nat.h", natAbi.STRUCTS],
    ["nkit_shared.h", sharedAbi.STRUCTS],
  ]);
  for (const [header, codecs] of GENERATED) {
    it(`${header}: every struct it defines has a generated codec`, () => {
      const text = readFileSync(join(BUILD, "..", "include", header), "utf8");
      const defined = [...text.matchAll(/^struct (nk_\w+) \{/gm)].map((m) => m[1]);
      expect(codecs.map((c) => c.name)).toEqual(defined);
    });
    for (const codec of codecs) {
      it(`${header}: generated struct ${codec.name} matches the BTF of every object that records it`, () => {
        const recording = PRODUCT.filter((o) => btfStructLayout(o, codec.name) !== null);
        expect(recording.length, `no product object records struct ${codec.name}`).toBeGreaterThan(0);
        for (const o of recording) expectLayout(o, codec);
      });
    }
  }

  it("unknown structs are reported as absent", () => {
    expect(btfStructLayout(pathOf(OBJECTS[0]!), "no_such_struct")).toBeNull();
  });
});

describe("maps and programs the TS side opens", () => {
  for (const o of OBJECTS.filter((x) => x.maps.length > 0 || x.programs.length > 0)) {
    it(`${o.object}: ${[...o.maps.map((m) => m.name), ...o.programs].join(", ")}`, () => {
      const obj = BpfObject.open(pathOf(o));
      try {
        const maps = obj.maps();
        for (const want of o.maps) {
          const got = maps.find((m) => m.name === want.name);
          expect(got, `map ${want.name} is not defined in ${o.object}`).toBeDefined();
          expect(
            got && { name: got.name, type: got.typeName, keySize: got.keySize, valueSize: got.valueSize },
            `map ${want.name} in ${o.object}`,
          ).toEqual(want);
          expect(got?.pinPath, `map ${want.name} must be LIBBPF_PIN_BY_NAME`).not.toBeNull();
        }
        const programs = obj.programs().map((p) => p.name);
        for (const p of o.programs) expect(programs, `program ${p} in ${o.object}`).toContain(p);
      } finally {
        obj.close();
      }
    });
  }
});

describe("uapi constants", () => {
  it("match the values the addon was compiled with", () => {
    const c = bpfAddon().bpfConstants();
    const expected: Record<string, number> = {
      BPF_TCX_INGRESS: BPF.TCX_INGRESS,
      BPF_TCX_EGRESS: BPF.TCX_EGRESS,
      BPF_NETKIT_PRIMARY: BPF.NETKIT_PRIMARY,
      BPF_NETKIT_PEER: BPF.NETKIT_PEER,
      BPF_CGROUP_INET4_CONNECT: BPF.CGROUP_INET4_CONNECT,
      BPF_CGROUP_INET6_CONNECT: BPF.CGROUP_INET6_CONNECT,
      BPF_CGROUP_UDP4_SENDMSG: BPF.CGROUP_UDP4_SENDMSG,
      BPF_CGROUP_UDP6_SENDMSG: BPF.CGROUP_UDP6_SENDMSG,
      BPF_CGROUP_UDP4_RECVMSG: BPF.CGROUP_UDP4_RECVMSG,
      BPF_CGROUP_UDP6_RECVMSG: BPF.CGROUP_UDP6_RECVMSG,
      BPF_CGROUP_INET4_GETPEERNAME: BPF.CGROUP_INET4_GETPEERNAME,
      BPF_CGROUP_INET6_GETPEERNAME: BPF.CGROUP_INET6_GETPEERNAME,
      BPF_LINK_TYPE_CGROUP: BPF.LINK_TYPE_CGROUP,
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
      BPF_F_INNER_MAP: BPF.F_INNER_MAP,
      BPF_FUNC_fib_lookup: BPF.FUNC_FIB_LOOKUP,
      BPF_FUNC_redirect_neigh: BPF.FUNC_REDIRECT_NEIGH,
      BPF_FUNC_redirect_peer: BPF.FUNC_REDIRECT_PEER,
    };
    for (const [k, v] of Object.entries(expected)) expect(c[k], k).toBe(v);
  });
});
