// The TS side of the BPF objects is generated from the built objects (bpf/gen-abi.mjs): the codecs
// of the nkit headers (bpf/include/nkit_*.h, bpf/test/nkit_test.h) must match the C layout exactly,
// and each object's description (src/bpf/gen/<object>.skel.ts, test/helpers/gen) must name every map
// and program the object defines, with the type, sizes, capacity, pinning and key and value codecs it
// has: checked against the BTF and the map and program definitions the compiler recorded in the
// built objects (no kernel access needed, only the ELF files), so a generated file older than the
// objects fails here. One row per object; a new header or object adds a row.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { Codec, StructCodec } from "../../src/bpf/codec.js";
import { BPF, CGROUP_ATTACH_TYPE, cgroupHookOf } from "../../src/bpf/constants.js";
import { datapathObject } from "../../src/bpf/gen/datapath.skel.js";
import { MAP_KINDS } from "../../src/bpf/gen/map-kinds.js";
import * as datapathAbi from "../../src/bpf/gen/nkit_datapath.js";
import * as lbAbi from "../../src/bpf/gen/nkit_lb.js";
import * as natAbi from "../../src/bpf/gen/nkit_nat.js";
import * as sharedAbi from "../../src/bpf/gen/nkit_shared.js";
import { sockLbObject } from "../../src/bpf/gen/sock_lb.skel.js";
import { BpfObject, btfStructLayout, type MapSpec } from "../../src/bpf/object.js";
import type { MapDef, ObjectDef } from "../../src/bpf/skeleton.js";
import { bpfAddon, type NativeBtfType } from "../../src/native/bpf.js";
import { TEST_STRUCTS } from "../helpers/bpf-test-structs.js";
import { badVerifierObject } from "../helpers/gen/bad_verifier.skel.js";
import { counterObject } from "../helpers/gen/counter.skel.js";
import { mapsObject } from "../helpers/gen/maps.skel.js";

const BUILD = join(import.meta.dirname, "..", "..", "bpf", "build");

interface ObjectAbi {
  /** The generated description; its file is the path under bpf/build. */
  def: ObjectDef;
  /** Structs the object must record in its BTF exactly as the codecs lay them out. */
  structs: readonly StructCodec<unknown>[];
  /** Every map is LIBBPF_PIN_BY_NAME (nkitd's maps outlive it and are shared between objects). */
  allPinned: boolean;
}

const OBJECTS: readonly ObjectAbi[] = [
  { def: datapathObject, structs: [], allPinned: true },
  { def: sockLbObject, structs: [], allPinned: true },
  { def: counterObject, structs: TEST_STRUCTS, allPinned: true },
  // maps.bpf.o's nk_hook_* structs must agree with the counter fixture's.
  { def: mapsObject, structs: TEST_STRUCTS, allPinned: false },
  { def: badVerifierObject, structs: [], allPinned: false },
];

const pathOf = (o: ObjectAbi): string => join(BUILD, o.def.file);

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
      it(`${o.def.file}: struct ${codec.name} size and member offsets match BTF`, () => {
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

/** The handle each libbpf map type gets (MAP_KINDS of bpf/gen-abi.mjs, as generated). */
const KIND_OF: Readonly<Record<string, MapDef["kind"]>> = MAP_KINDS;

const btfName = (t: NativeBtfType | null): string | null =>
  t && (t.typeName || `${t.elemTypeName}[${t.count}]`);

/** A codec's struct name, or null for a scalar codec. */
const structName = (c: Codec<unknown>): string | null =>
  "layout" in c ? (c as StructCodec<unknown>).name : null;

/** A map as libbpf reports it from the built object. */
function builtMap(m: MapSpec) {
  return {
    name: m.name,
    kind: KIND_OF[m.typeName],
    type: m.typeName,
    keySize: m.keySize,
    valueSize: m.valueSize,
    keyType: btfName(m.keyType),
    valueType: btfName(m.valueType),
    keyStruct: m.keyType?.kind === "struct" ? m.keyType.typeName : null,
    valueStruct: m.valueType?.kind === "struct" ? m.valueType.typeName : null,
    maxEntries: m.maxEntries,
    flags: m.flags,
    pinned: m.pinPath !== null,
  };
}

/** The same view of a generated map description. */
function describedMap(d: MapDef): ReturnType<typeof builtMap> {
  const key = d.kind === "ringbuf" ? null : d.key;
  const value = d.kind === "plain" || d.kind === "percpu" ? d.value : null;
  return {
    name: d.name,
    kind: d.kind,
    type: d.type,
    keySize: key?.size ?? 0,
    // a map of maps holds inner map ids (u32), which have no BTF type
    valueSize: value?.size ?? (d.kind === "map-of-maps" ? 4 : 0),
    keyType: d.kind === "ringbuf" ? null : d.keyType,
    valueType: d.kind === "plain" || d.kind === "percpu" ? d.valueType : null,
    keyStruct: key && structName(key),
    valueStruct: value && structName(value),
    maxEntries: d.maxEntries,
    flags: d.flags,
    pinned: d.pinned,
  };
}

describe("generated object descriptions", () => {
  for (const o of OBJECTS) {
    it(`${o.def.file}: every map and program, as the built object defines them`, () => {
      const obj = BpfObject.open(pathOf(o));
      try {
        const maps = obj.maps().filter((m) => !m.internal);
        expect(Object.keys(o.def.maps), `maps of ${o.def.file}`).toEqual(maps.map((m) => m.name));
        for (const m of maps) {
          const def = o.def.maps[m.name];
          expect(def && describedMap(def), `map ${m.name} in ${o.def.file}`).toEqual(builtMap(m));
          if (o.allPinned) expect(m.pinPath, `map ${m.name} must be LIBBPF_PIN_BY_NAME`).not.toBeNull();
        }
        expect(Object.values(o.def.programs)).toEqual(
          obj.programs().map((p) => ({ name: p.name, section: p.section, type: p.typeName })),
        );
      } finally {
        obj.close();
      }
    });
  }

  it("sock_lb.bpf.o: every program runs at a cgroup hook, one per hook", () => {
    const hooks = Object.values(sockLbObject.programs).map((p) => cgroupHookOf(p.section));
    expect(hooks.sort()).toEqual(Object.keys(CGROUP_ATTACH_TYPE).sort());
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
