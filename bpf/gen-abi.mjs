// Build step `npm run build:abi` (after build:bpf): the TS side of the BPF ABI, generated from the
// built objects, never copied by hand. Not committed, like the protobuf code.
//  - Structs: for every struct defined in bpf/include/nkit_<name>.h, an interface and a struct codec
//    in src/bpf/gen/nkit_<name>.ts (bpf/test/nkit_test.h: test/helpers/gen), from the BTF the
//    compiler recorded in the objects: member names, offsets and sizes as BTF has them; __be16
//    members in network order, other integers in host order (u64 as bigint), u8 arrays as Buffers,
//    members named pad* as zero padding.
//  - Objects: for every bpf/build/<object>.bpf.o (bpf/build/test: test/helpers/gen), a description
//    in <object>.skel.ts that src/bpf/skeleton.ts turns into typed handles: each map's name, libbpf
//    type, capacity and pinning, with the key and value codecs its BTF key and value types call for
//    (a struct's generated codec, a scalar's integer codec), and each program's name and section.
// A type it cannot map fails the build, naming the member or map.
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "..");
const addon = createRequire(import.meta.url)(join(root, "native", "build", "nkit.node"));
// The product's headers (codecs in src/bpf/gen) and the test fixtures' (test/helpers/gen).
const SETS = [
  {
    include: join(here, "include"),
    objects: join(here, "build"),
    out: join(root, "src", "bpf", "gen"),
    codec: "../codec.js",
    skeleton: "../skeleton.js",
  },
  {
    include: join(here, "test"),
    objects: join(here, "build", "test"),
    out: join(root, "test", "helpers", "gen"),
    codec: "../../../src/bpf/codec.js",
    skeleton: "../../../src/bpf/skeleton.js",
  },
];

const pascal = (s) => s.replace(/(^|_)([a-z0-9])/g, (_, __, c) => c.toUpperCase());
const camel = (s) => pascal(s).replace(/^./, (c) => c.toLowerCase());

function fail(msg) {
  console.error(`gen-abi: ${msg}`);
  process.exit(1);
}

/** The codec expression and TS type of a scalar (integer, enum, u8 array) BTF type; null otherwise. */
function scalarCodec(t, where) {
  if (t.kind === "int" || t.kind === "enum") {
    if (t.typeName === "__be16") return { codec: "be16", ts: "number" };
    if (t.typeName.startsWith("__be")) fail(`${where}: only __be16 has a network-order codec`);
    const byWidth = { 1: "u8", 2: "u16", 4: "u32", 8: "u64" }[t.size];
    if (!byWidth) fail(`${where}: a ${t.size}-byte integer has no codec`);
    return { codec: byWidth, ts: byWidth === "u64" ? "bigint" : "number" };
  }
  if (t.kind === "array" && t.elemKind === "int" && t.size === t.count) {
    return { codec: `bytes(${t.count})`, ts: "Buffer" };
  }
  return null;
}

/** The codec expression and TS type of one member. */
function codecOf(struct, m) {
  const where = `struct ${struct}.${m.name} (${m.typeName || m.kind})`;
  if (m.bitSize) fail(`${where}: bit fields have no codec`);
  return (
    scalarCodec(m, where) ?? fail(`${where}: ${m.kind} members have no codec (use integers and u8 arrays)`)
  );
}

function findStruct(name, objects) {
  for (const o of objects) {
    const s = addon.btfStruct(o, name);
    if (s) return s;
  }
  return fail(
    `struct ${name} is in no object's BTF (${objects.join(", ")}): use it in a program or remove it`,
  );
}

/** Writes file unless it already holds text (so tsc and vitest see no change on a no-op build). */
function writeIfChanged(file, text) {
  if (!existsSync(file) || readFileSync(file, "utf8") !== text) writeFileSync(file, text);
}

/** libbpf map types by the handle src/bpf/skeleton.ts gives them. */
const MAP_KINDS = {
  hash: "plain",
  array: "plain",
  lru_hash: "plain",
  lpm_trie: "plain",
  percpu_hash: "percpu",
  percpu_array: "percpu",
  lru_percpu_hash: "percpu",
  hash_of_maps: "map-of-maps",
  array_of_maps: "map-of-maps",
  ringbuf: "ringbuf",
};

/** The codec expression of a map's key or value type: a struct's generated codec or a scalar's. */
function mapCodec(where, t, codecs, imports) {
  if (!t) return fail(`${where}: the map records no BTF type (declare it with __type)`);
  if (t.kind === "struct") {
    const c = codecs.get(t.typeName);
    if (!c) fail(`${where} is struct ${t.typeName}, which no nkit_*.h header next to the objects defines`);
    if (!imports.has(c.module)) imports.set(c.module, new Set());
    imports.get(c.module).add(c.codec);
    return c.codec;
  }
  const scalar = scalarCodec(t, `${where} (${t.typeName || t.kind})`);
  if (!scalar)
    fail(`${where} is a ${t.kind} (${t.typeName}): no codec (use a struct, an integer or a u8 array)`);
  imports.get("codec").add(scalar.codec.replace(/\(.*/, ""));
  return scalar.codec;
}

/** The lines of an object literal's member `name` holding `lines`. */
const record = (name, lines) => (lines.length ? [`  ${name}: {`, ...lines, "  },"] : [`  ${name}: {},`]);

const btfName = (t) => t.typeName || `${t.elemTypeName}[${t.count}]`;

/** src/bpf/gen/<object>.skel.ts: the maps and programs of one built object. */
function writeSkeleton(set, path, codecs) {
  const stem = basename(path, ".bpf.o");
  const file = relative(join(here, "build"), path);
  const obj = addon.objOpen(path, {});
  let maps;
  let programs;
  try {
    maps = addon.objMaps(obj).filter((m) => !m.internal);
    programs = addon.objPrograms(obj);
  } finally {
    addon.objClose(obj);
  }
  const imports = new Map([["codec", new Set()]]);
  const mapLines = maps.map((m) => {
    const where = `map ${m.name} of ${file}`;
    const kind =
      MAP_KINDS[m.typeName] ??
      fail(`${where}: a ${m.typeName} map has no handle type in src/bpf/skeleton.ts`);
    // A ring has neither keys nor values; a map of maps' values are maps, set whole.
    const hasKey = kind !== "ringbuf";
    const hasValue = kind === "plain" || kind === "percpu";
    const fields = [`name: "${m.name}"`, `kind: "${kind}"`, `type: "${m.typeName}"`];
    if (hasKey) fields.push(`key: ${mapCodec(`${where}: the key`, m.keyType, codecs, imports)}`);
    if (hasValue) fields.push(`value: ${mapCodec(`${where}: the value`, m.valueType, codecs, imports)}`);
    if (hasKey) fields.push(`keyType: "${btfName(m.keyType)}"`);
    if (hasValue) fields.push(`valueType: "${btfName(m.valueType)}"`);
    fields.push(`maxEntries: ${m.maxEntries}`, `flags: ${m.flags}`, `pinned: ${m.pinPath !== null}`);
    return `    ${m.name}: { ${fields.join(", ")} },`;
  });
  const programLines = programs.map(
    (p) => `    ${p.name}: { name: "${p.name}", section: "${p.section}", type: "${p.typeName}" },`,
  );
  const value = `${camel(stem)}Object`;
  const type = `${pascal(stem)}Object`;
  const codecNames = [...imports.get("codec")].sort();
  imports.delete("codec");
  const out = [
    "// biome-ignore-all format: generated by bpf/gen-abi.mjs",
    `// GENERATED from bpf/build/${file} (its maps, their BTF key and value types, its programs) by`,
    "// `npm run build:abi`. Do not edit: change the object's source and rebuild.",
    ...(codecNames.length ? [`import { ${codecNames.join(", ")} } from "${set.codec}";`] : []),
    `import type { MapHandles, ObjectDef } from "${set.skeleton}";`,
    ...[...imports.keys()]
      .sort()
      .map((mod) => `import { ${[...imports.get(mod)].sort().join(", ")} } from "${mod}";`),
    "",
    `/** bpf/build/${file}: open it with Skeleton.load, or its pinned maps with pinnedMaps. */`,
    `export const ${value} = {`,
    `  file: "${file}",`,
    ...record("maps", mapLines),
    ...record("programs", programLines),
    "} as const satisfies ObjectDef;",
    "",
    `export type ${type} = typeof ${value};`,
    `/** Typed handles of every map of ${file}. */`,
    `export type ${type}Maps = MapHandles<${type}["maps"]>;`,
    "",
  ].join("\n");
  writeIfChanged(join(set.out, `${stem}.skel.ts`), out);
}

for (const set of SETS) {
  const objects = readdirSync(set.objects)
    .filter((f) => f.endsWith(".bpf.o"))
    .map((f) => join(set.objects, f));
  mkdirSync(set.out, { recursive: true });
  /** struct name -> the generated module and codec that encode it, for the objects' map types. */
  const codecs = new Map();
  const headers = readdirSync(set.include).filter((f) => /^nkit_\w+\.h$/.test(f));
  for (const header of headers) {
    const text = readFileSync(join(set.include, header), "utf8");
    const names = [...text.matchAll(/^struct (nk_\w+) \{/gm)].map((m) => m[1]);
    if (names.length === 0) continue;
    const used = new Set(["type StructCodec", "struct"]);
    const parts = [];
    const all = [];
    for (const name of names) {
      const s = findStruct(name, objects);
      const fields = [];
      const padding = [];
      const types = [];
      for (const m of s.members) {
        if (m.name.startsWith("pad")) {
          padding.push(`{ name: "${m.name}", offset: ${m.offset}, size: ${m.size} }`);
          continue;
        }
        const c = codecOf(name, m);
        used.add(c.codec.replace(/\(.*/, ""));
        fields.push(`    ${m.name}: { offset: ${m.offset}, codec: ${c.codec} },`);
        types.push(`  ${m.name}: ${c.ts};`);
      }
      const type = pascal(name);
      const value = camel(name);
      all.push(value);
      codecs.set(name, { module: `./${header.replace(/\.h$/, ".js")}`, codec: value });
      parts.push(
        [
          `/** struct ${name} (${header}) */`,
          `export interface ${type} {`,
          ...types,
          "}",
          "",
          `export const ${value}: StructCodec<${type}> = struct<${type}>({`,
          `  name: "${name}",`,
          `  size: ${s.size},`,
          "  fields: {",
          ...fields,
          "  },",
          ...(padding.length ? [`  padding: [${padding.join(", ")}],`] : []),
          "});",
          "",
        ].join("\n"),
      );
    }
    const imports = [...used].sort((a, b) => a.replace("type ", "").localeCompare(b.replace("type ", "")));
    const out = [
      "// biome-ignore-all format: generated by bpf/gen-abi.mjs",
      `// GENERATED from the BTF of the built objects for the structs of ${set.include.slice(root.length + 1)}/${header} by`,
      "// `npm run build:abi`. Do not edit: change the header and rebuild.",
      `import { ${imports.join(", ")} } from "${set.codec}";`,
      "",
      ...parts,
      `/** Every struct of ${header}, for the BTF layout test. */`,
      `export const STRUCTS: readonly StructCodec<unknown>[] = [${all.map((v) => `${v} as StructCodec<unknown>`).join(", ")}];`,
      "",
    ].join("\n");
    writeIfChanged(join(set.out, header.replace(/\.h$/, ".ts")), out);
  }
  for (const object of objects) writeSkeleton(set, object, codecs);
}
