// Map capacities, the Maglev table size and conntrack timeouts come from nkitd's config: the pinned
// maps carry the configured sizes, an external VIP load-balances over tables of the configured
// size, and a restart with other sizes makes the maps anew (logged), rebuilds the tables and keeps
// the service answering; nk_ct_config holds the configured timeouts.
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NkitClient } from "../../src/api/client.js";
import { datapathObject } from "../../src/bpf/gen/datapath.skel.js";
import { BpfMap, pinnedMapInfo } from "../../src/bpf/map.js";
import type { PlainMapDef } from "../../src/bpf/skeleton.js";
import {
  Nkitd,
  type NkitdSetup,
  nkitdSetup,
  type OutsideNetns,
  outsideBehindUplink,
  requireDist,
  wireBackendPods,
} from "../helpers/nkitd.js";
import { Scope } from "../helpers/scope.js";
import { run } from "../helpers/sys.js";

const FIXTURES = join(import.meta.dirname, "..", "fixtures", "net");
const CLIENT = join(FIXTURES, "lb-client.mjs");
const VIP = "10.96.73.10";

const scope = new Scope();
let setup: NkitdSetup;
let outside: OutsideNetns;
let daemon: Nkitd;

const limitsLine = (l: string) => `limits: {${l}}`;
const FIRST = "services: 1024, backends: 4096, conntrack: 8192, externalFrontends: 64, maglevTableSize: 251";
const SECOND =
  "services: 2048, backends: 4096, conntrack: 16384, externalFrontends: 64, maglevTableSize: 509";

function configText(limits: string): string[] {
  return [
    limitsLine(limits),
    "timeouts: {tcpEstablished: 7200, tcpOpening: 30, tcpClosing: 5, udp: 120}",
    "services:",
    "  - name: lim",
    `    vip: ${VIP}`,
    "    ports: [{port: 80, protocol: tcp, targetPort: 8080}]",
    "    selector: {app: lim}",
    "    external: true",
  ];
}

const M = datapathObject.maps;

const sizeOf = (def: { name: string }) => pinnedMapInfo(join(setup.bpffsDir, def.name)).maxEntries;

function pinnedValue<V>(def: PlainMapDef<number, V>): V | undefined {
  const m = BpfMap.fromPin(join(setup.bpffsDir, def.name), def.key, def.value);
  try {
    return m.lookup(0);
  } finally {
    m.close();
  }
}

async function fromOutside(
  n: number,
): Promise<{ answers: Record<string, number>; errors: Record<string, number> }> {
  const r = await run(
    "nsenter",
    [`--net=${outside.netns.path}`, "--", process.execPath, CLIENT, "tcp", VIP, "80", String(n)],
    60_000,
  );
  return JSON.parse(r.stdout.trim());
}

beforeAll(async () => {
  requireDist();
  setup = await nkitdSetup(scope, "lim", configText(FIRST));
  outside = await outsideBehindUplink(scope, setup, "lo");
  await run("ip", ["-n", outside.netns.name, "route", "add", "10.96.0.0/16", "via", outside.host4]);
  daemon = await Nkitd.start(scope, ["--config", setup.config]);
  const api = new NkitClient(setup.socket);
  scope.defer(() => api.close());
  await wireBackendPods(scope, api, "lim", ["l1", "l2"], { app: "lim" });
}, 120_000);

afterAll(async () => {
  await scope.close();
});

describe("limits and timeouts from the config", () => {
  it("sizes the shared maps, the Maglev tables and the conntrack timeouts as configured", async () => {
    expect(sizeOf(M.nk_lb_services)).toBe(1024);
    expect(sizeOf(M.nk_lb_backends)).toBe(4096);
    expect(sizeOf(M.nk_lb_backend_conns)).toBe(4096);
    expect(sizeOf(M.nk_lb_ct)).toBe(8192);
    expect(sizeOf(M.nk_lb_maglev)).toBe(64);
    expect(pinnedValue(M.nk_lb_config)?.maglev_m).toBe(251);
    expect(pinnedValue(M.nk_ct_config)).toEqual({
      tcp_established_ns: 7200n * 1_000_000_000n,
      tcp_opening_ns: 30n * 1_000_000_000n,
      tcp_closing_ns: 5n * 1_000_000_000n,
      other_ns: 120n * 1_000_000_000n,
    });
    const r = await fromOutside(40);
    expect(r.errors).toEqual({});
    expect(Object.keys(r.answers).sort()).toEqual(["l1", "l2"]);
  });

  it("a restart with other sizes makes the maps anew, rebuilds the tables and keeps the VIP answering", async () => {
    await daemon.stop();
    const { writeFileSync, readFileSync } = await import("node:fs");
    writeFileSync(
      setup.config,
      readFileSync(setup.config, "utf8").replace(limitsLine(FIRST), limitsLine(SECOND)),
    );
    daemon = await Nkitd.start(scope, ["--config", setup.config]);
    const remade = daemon.logs().filter((l) => typeof l.msg === "string" && l.msg.includes("made anew"));
    expect(remade.map((l) => l.name).sort()).toEqual([M.nk_lb_ct.name, M.nk_lb_services.name]);
    expect(sizeOf(M.nk_lb_services)).toBe(2048);
    expect(sizeOf(M.nk_lb_ct)).toBe(16384);
    expect(pinnedValue(M.nk_lb_config)?.maglev_m).toBe(509);
    const r = await fromOutside(40);
    expect(r.errors).toEqual({});
    expect(Object.keys(r.answers).sort()).toEqual(["l1", "l2"]);
    expect(daemon.logs().filter((l) => l.level >= 50)).toEqual([]);
  });

  it("a restart with only another Maglev table size rebuilds the tables in place", async () => {
    await daemon.stop();
    const { writeFileSync, readFileSync } = await import("node:fs");
    const third = SECOND.replace("maglevTableSize: 509", "maglevTableSize: 1021");
    writeFileSync(
      setup.config,
      readFileSync(setup.config, "utf8").replace(limitsLine(SECOND), limitsLine(third)),
    );
    daemon = await Nkitd.start(scope, ["--config", setup.config]);
    expect(daemon.logs().filter((l) => typeof l.msg === "string" && l.msg.includes("made anew"))).toEqual([]);
    expect(daemon.log("Maglev tables built")).toMatchObject({ tables: 1, size: 1021 });
    expect(pinnedValue(M.nk_lb_config)?.maglev_m).toBe(1021);
    const r = await fromOutside(40);
    expect(r.errors).toEqual({});
    expect(Object.keys(r.answers).sort()).toEqual(["l1", "l2"]);
  });
});
