// Service definitions (every source's one parser) and the service manager's bookkeeping: conflicts,
// sources, selectors, persistence of API services, and what it asks the datapath to hold. The
// datapath here is a recording table (pure logic); the kernel side has its own integration tests.
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseVipFlag, serviceFromFlags } from "../../src/cli/services.js";
import { AlreadyExistsError, NotFoundError, StateCorruptError } from "../../src/errors.js";
import { ServiceFiles } from "../../src/services/files.js";
import { HostPorts } from "../../src/services/host-ports.js";
import { type LbTable, ServiceManager } from "../../src/services/manager.js";
import {
  frontendId,
  frontendOf,
  keptSpec,
  type LbEntry,
  lbEntries,
  parseServiceSpec,
  programmedAs,
  ServiceSpecError,
} from "../../src/services/spec.js";

const web = {
  name: "web",
  vip: "10.96.0.10",
  ports: [{ port: 80, protocol: "tcp", targetPort: 8080 }],
  backends: ["10.47.0.5", "10.47.0.6"],
};

function specError(raw: unknown): ServiceSpecError {
  try {
    parseServiceSpec(raw, "services[0]");
  } catch (e) {
    expect(e).toBeInstanceOf(ServiceSpecError);
    return e as ServiceSpecError;
  }
  throw new Error("expected a ServiceSpecError");
}

describe("parseServiceSpec", () => {
  it("normalizes the YAML form: defaults, bare and ported backends, IPv6", () => {
    const s = parseServiceSpec(web, "services[0]");
    expect(s).toEqual({
      name: "web",
      vip: "10.96.0.10",
      family: 4,
      ports: [{ port: 80, protocol: "tcp", targetPort: 8080 }],
      backends: [{ address: "10.47.0.5" }, { address: "10.47.0.6" }],
      affinity: "none",
      affinityTimeoutSeconds: 10800,
    });
    expect(lbEntries(s)[0]?.backends).toEqual([
      { address: "10.47.0.5", port: 8080 },
      { address: "10.47.0.6", port: 8080 },
    ]);
    const v6 = parseServiceSpec(
      {
        name: "dns",
        vip: "fd96::a",
        ports: [{ port: 53, protocol: "udp" }],
        backends: ["[fd47::5]:5353"],
        affinity: "client-ip",
      },
      "k",
    );
    expect(lbEntries(v6)).toEqual([
      {
        service: "dns",
        vip: "fd96::a",
        port: 53,
        protocol: "udp",
        backends: [{ address: "fd47::5", port: 5353 }],
        affinity: "client-ip",
        affinityTimeoutSeconds: 10800,
      },
    ]);
    expect(frontendId({ vip: "fd96:0::a", port: 53, protocol: "udp" })).toBe("[fd96::a]:53/udp");
  });

  it("names the bad key, the value and the fix", () => {
    expect(specError({ ...web, name: "Web!" }).key).toBe("services[0].name");
    expect(specError({ ...web, vip: "10.96.0" }).message).toMatch(
      /services\[0\]\.vip: "10\.96\.0" is not an IP address/,
    );
    expect(specError({ ...web, ports: [{ port: 0 }] }).key).toBe("services[0].ports[0].port");
    expect(specError({ ...web, ports: [{ port: 80, protocol: "sctp" }] }).message).toMatch(/use tcp or udp/);
    expect(specError({ ...web, ports: [{ port: 80 }, { port: 80, protocol: "tcp" }] }).message).toMatch(
      /80\/tcp is listed twice/,
    );
    expect(specError({ ...web, backends: ["fd47::5"] }).message).toMatch(
      /IPv6 but the VIP 10\.96\.0\.10 is IPv4/,
    );
    expect(specError({ ...web, backends: ["10.47.0.5:1", "10.47.0.5:1"] }).key).toBe(
      "services[0].backends[1]",
    );
    expect(
      specError({ ...web, ports: [{ port: 80 }, { port: 81 }], backends: ["10.47.0.5:1"] }).message,
    ).toMatch(/bare addresses/);
    expect(specError({ ...web, selector: { app: "web" } }).message).toMatch(/both backends and selector/);
    expect(specError({ ...web, affinity: "sticky" }).key).toBe("services[0].affinity");
    expect(specError({ ...web, colour: "red" }).key).toBe("services[0].colour");
  });
});

describe("frontend ids and programmed forms", () => {
  it("frontendOf reads back every frontendId, both families and protocols", () => {
    for (const f of [
      { vip: "10.96.0.10", port: 80, protocol: "tcp" as const },
      { vip: "fd96::10", port: 65535, protocol: "udp" as const },
      { vip: "::", port: 1, protocol: "tcp" as const },
    ]) {
      expect(frontendOf(frontendId(f))).toEqual(f);
    }
    expect(frontendId({ vip: "fd96::10", port: 53, protocol: "udp" })).toBe("[fd96::10]:53/udp");
    expect(() => frontendOf("10.96.0.10/tcp")).toThrow(/not a frontend id/);
  });

  it("programmedAs differs exactly where the maps would", () => {
    const [e] = lbEntries(parseServiceSpec(web, "t"));
    if (!e) throw new Error("no entry");
    expect(programmedAs({ ...e, service: "other" })).toBe(programmedAs(e));
    for (const changed of [
      { ...e, backends: [...e.backends].reverse() },
      { ...e, backends: e.backends.map((b) => ({ ...b, port: 9090 })) },
      { ...e, affinity: "client-ip" as const },
      { ...e, affinityTimeoutSeconds: 60 },
      { ...e, external: true },
    ]) {
      expect(programmedAs(changed)).not.toBe(programmedAs(e));
    }
  });

  it("keptSpec copies exactly the spec's fields", () => {
    const full = parseServiceSpec(
      { ...web, selector: { app: "web" }, backends: undefined, external: true, affinity: "client-ip" },
      "t",
    );
    const bare = parseServiceSpec({ ...web, backends: ["10.47.0.5:81", "10.47.0.6"] }, "t");
    for (const s of [full, bare]) {
      const kept = keptSpec(s);
      expect(kept).toEqual(s);
      expect(kept.ports).not.toBe(s.ports);
    }
  });
});

class RecordingTable implements LbTable {
  readonly entries = new Map<string, LbEntry>();
  calls: string[] = [];
  failNext = false;
  set(e: LbEntry): void {
    if (this.failNext) {
      this.failNext = false;
      throw new Error("map full");
    }
    this.calls.push(`set ${frontendId(e)}`);
    this.entries.set(frontendId(e), structuredClone(e));
  }
  remove(e: Pick<LbEntry, "vip" | "port" | "protocol">): void {
    this.calls.push(`remove ${frontendId(e)}`);
    this.entries.delete(frontendId(e));
  }
}

describe("ServiceManager", () => {
  let dir: string;
  let table: RecordingTable;
  const open = () => new ServiceManager({ table, storeDir: join(dir, "services") });
  const spec = (raw: Record<string, unknown>) => parseServiceSpec({ ...web, ...raw }, "t");
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "nkit-svc-"));
    table = new RecordingTable();
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("programs a service's frontends, replaces only what changed, removes on delete", () => {
    const m = open();
    m.upsert(spec({ ports: [{ port: 80 }, { port: 443 }] }), "api");
    expect([...table.entries.keys()].sort()).toEqual(["10.96.0.10:443/tcp", "10.96.0.10:80/tcp"]);
    table.calls = [];
    m.upsert(spec({ ports: [{ port: 80 }, { port: 443, targetPort: 8443 }] }), "api");
    expect(table.calls).toEqual(["set 10.96.0.10:443/tcp"]);
    table.calls = [];
    m.upsert(spec({ ports: [{ port: 80 }] }), "api");
    expect(table.calls).toEqual(["remove 10.96.0.10:443/tcp"]);
    m.delete("web");
    expect(table.entries.size).toBe(0);
    expect(() => m.delete("web")).toThrow(NotFoundError);
  });

  it("shares its records with the state store, frozen, and rewrites nothing for an unchanged source", () => {
    const m = open();
    const nomad = [spec({ name: "a" }), spec({ name: "b", vip: "10.96.0.11" })];
    expect(m.replaceSource("nomad", nomad)).toEqual([]);
    const files = join(dir, "services");
    const written = readdirSync(files).map((f) => [f, statSync(join(files, f)).mtimeMs]);
    table.calls = [];
    expect(m.replaceSource("nomad", structuredClone(nomad))).toEqual([]);
    expect(table.calls).toEqual([]);
    expect(readdirSync(files).map((f) => [f, statSync(join(files, f)).mtimeMs])).toEqual(written);
    // What the manager hands out is a copy it may not share: changing it changes nothing.
    const view = m.get("a");
    if (!view) throw new Error("no service a");
    view.spec.backends.push({ address: "10.47.9.9" });
    expect(m.get("a")?.spec.backends).toHaveLength(2);
    // A restart reads the same services back.
    expect(
      open()
        .list()
        .map((v) => v.spec),
    ).toEqual(nomad.map(keptSpec));
  });

  it("refuses a frontend or name another service holds, naming it", () => {
    const m = open();
    m.upsert(spec({}), "config");
    expect(() => m.upsert(spec({ name: "other" }), "api")).toThrow(AlreadyExistsError);
    expect(() => m.upsert(spec({ name: "other" }), "api")).toThrow(
      /10\.96\.0\.10:80\/tcp is already the frontend of service web/,
    );
    expect(() => m.upsert(spec({ vip: "10.96.0.11" }), "api")).toThrow(
      /service web already exists from config/,
    );
    expect(m.list().map((s) => s.spec.name)).toEqual(["web"]);
  });

  it("replaces one source's services, skipping the conflicting ones and keeping the rest", () => {
    const m = open();
    m.upsert(spec({}), "api");
    const failed = m.replaceSource(
      "file",
      [
        spec({ name: "a", vip: "10.96.0.20" }),
        spec({ name: "clash" }),
        spec({ name: "b", vip: "10.96.0.21" }),
      ],
      "/etc/nkit/services.d/x.yaml",
    );
    expect(failed.map((f) => f.name)).toEqual(["clash"]);
    expect(m.list().map((s) => `${s.spec.name}:${s.source}`)).toEqual(["a:file", "b:file", "web:api"]);
    m.replaceSource("file", [spec({ name: "b", vip: "10.96.0.21" })], "/etc/nkit/services.d/x.yaml");
    expect(m.list().map((s) => s.spec.name)).toEqual(["b", "web"]);
    expect(table.entries.has("10.96.0.20:80/tcp")).toBe(false);
  });

  it("resolves selectors from endpoint labels, per family, as endpoints come and go", () => {
    const m = open();
    m.upsert(
      parseServiceSpec(
        { name: "sel", vip: "10.96.0.30", ports: [{ port: 80, targetPort: 8080 }], selector: { app: "web" } },
        "t",
      ),
      "config",
    );
    expect(table.entries.get("10.96.0.30:80/tcp")?.backends).toEqual([]);
    m.setEndpoints([
      { labels: { app: "web" }, addresses: ["10.47.0.5", "fd47::5"] },
      { labels: { app: "db" }, addresses: ["10.47.0.6"] },
    ]);
    expect(table.entries.get("10.96.0.30:80/tcp")?.backends).toEqual([{ address: "10.47.0.5", port: 8080 }]);
    m.setEndpoints([]);
    expect(table.entries.get("10.96.0.30:80/tcp")?.backends).toEqual([]);
  });

  it("keeps API services across a restart (and only those), and rolls back when the datapath refuses", () => {
    const m = open();
    m.upsert(spec({}), "api");
    m.upsert(spec({ name: "cfg", vip: "10.96.0.40" }), "config");
    table = new RecordingTable();
    const again = open();
    expect(again.list().map((s) => `${s.spec.name}:${s.source}`)).toEqual(["web:api"]);
    expect([...table.entries.keys()]).toEqual(["10.96.0.10:80/tcp"]);
    table.failNext = true;
    expect(() => again.upsert(spec({ vip: "10.96.0.50" }), "api")).toThrow(/map full/);
    expect(again.get("web")?.spec.vip).toBe("10.96.0.10");
    expect([...table.entries.keys()]).toEqual(["10.96.0.10:80/tcp"]);
    table = new RecordingTable();
    expect(open().get("web")?.spec.vip).toBe("10.96.0.10");
  });

  it("keeps one file per service and takes over the one-file store of earlier builds", () => {
    const rec = (name: string, vip: string) => ({ spec: spec({ name, vip }), source: "api", origin: "" });
    writeFileSync(
      join(dir, "services.json"),
      JSON.stringify({ version: 1, services: [rec("old-a", "10.96.0.71"), rec("old-b", "10.96.0.72")] }),
    );
    const m = open();
    expect(m.get("old-a")?.spec.vip).toBe("10.96.0.71");
    expect(m.get("old-b")?.spec.vip).toBe("10.96.0.72");
    expect(existsSync(join(dir, "services.json"))).toBe(false);
    expect(readdirSync(join(dir, "services")).sort()).toEqual(["old-a.json", "old-b.json"]);
    m.upsert(spec({ name: "new-c", vip: "10.96.0.73" }), "api");
    expect(readdirSync(join(dir, "services")).sort()).toEqual(["new-c.json", "old-a.json", "old-b.json"]);
    m.delete("old-a");
    expect(readdirSync(join(dir, "services")).sort()).toEqual(["new-c.json", "old-b.json"]);
    table = new RecordingTable();
    expect(
      open()
        .list()
        .map((v) => v.spec.name)
        .sort(),
    ).toEqual(["new-c", "old-b"]);
  });

  it("refuses a corrupt service record, naming it", () => {
    mkdirSync(join(dir, "services"), { recursive: true });
    writeFileSync(join(dir, "services", "web.json"), '{"version": 1, "spec": {}}');
    expect(open).toThrow(/services\/web\.json is unreadable .*nkit service add/);
  });

  it("refuses a corrupt services file", () => {
    writeFileSync(
      join(dir, "services.json"),
      JSON.stringify({ version: 1, services: [{ spec: {}, source: "api", origin: "" }] }),
    );
    expect(open).toThrow(StateCorruptError);
  });
});

describe("ServiceFiles", () => {
  let dir: string;
  let table: RecordingTable;
  let manager: ServiceManager;
  let files: ServiceFiles | undefined;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "nkit-svcfiles-"));
    mkdirSync(join(dir, "services.d"));
    table = new RecordingTable();
    manager = new ServiceManager({ table, storeDir: join(dir, "services") });
  });
  afterEach(() => {
    files?.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const file = (name: string) => join(dir, "services.d", name);
  const yaml = (name: string, vip: string) =>
    [`name: ${name}`, `vip: ${vip}`, "ports: [{port: 80, targetPort: 8080}]", "backends: [10.47.0.5]"].join(
      "\n",
    );

  it("applies each file, logs a bad one with its key and keeps the rest, follows edits and removals", async () => {
    writeFileSync(file("a.yaml"), yaml("a", "10.96.0.1"));
    writeFileSync(file("b.yaml"), yaml("b", "10.96.0.2").replace("port: 80,", "port: 0,"));
    writeFileSync(file("c.yml"), "name: [unclosed");
    writeFileSync(file(".hidden.yaml"), yaml("h", "10.96.0.9"));
    files = new ServiceFiles({ dir: join(dir, "services.d"), manager, settleMs: 20 });
    files.start();
    expect(manager.list().map((s) => `${s.spec.name}:${s.source}:${s.origin}`)).toEqual([
      `a:file:${file("a.yaml")}`,
    ]);
    expect(files.failures().map((f) => [f.file, f.key])).toEqual([
      [file("b.yaml"), "ports[0].port"],
      [file("c.yml"), ""],
    ]);

    // Fixed and broken again: the last good version stays.
    writeFileSync(file("b.yaml"), yaml("b", "10.96.0.2"));
    await until(() => manager.get("b") !== undefined);
    writeFileSync(file("b.yaml"), "vip: 10.96.0.3\n");
    await until(() => files?.failures().some((f) => f.file === file("b.yaml")) === true);
    expect(manager.get("b")?.spec.vip).toBe("10.96.0.2");

    rmSync(file("a.yaml"));
    await until(() => manager.get("a") === undefined);
    expect(table.entries.has("10.96.0.1:80/tcp")).toBe(false);
    expect(table.entries.has("10.96.0.2:80/tcp")).toBe(true);
  });

  it("waits for a directory that does not exist yet", () => {
    rmSync(join(dir, "services.d"), { recursive: true });
    files = new ServiceFiles({ dir: join(dir, "services.d"), manager });
    files.start();
    expect(manager.list()).toEqual([]);
    mkdirSync(join(dir, "services.d"));
    writeFileSync(file("a.yaml"), yaml("a", "10.96.0.1"));
    files.scan();
    expect(manager.get("a")?.source).toBe("file");
  });
});

/** Polls a condition (file watching is asynchronous); fails the test after 10 s. */
async function until(cond: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error("condition not met within 10 s");
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("nkit service add flags", () => {
  it("reads --vip in both families, with protocol and target port", () => {
    expect(parseVipFlag("10.96.0.10:80/tcp")).toEqual({
      vip: "10.96.0.10",
      port: { port: 80, protocol: "tcp", targetPort: 0 },
    });
    expect(parseVipFlag("[fd96::a]:53/udp->5353")).toEqual({
      vip: "fd96::a",
      port: { port: 53, protocol: "udp", targetPort: 5353 },
    });
    expect(parseVipFlag("10.96.0.10:443")).toMatchObject({ port: { protocol: "tcp" } });
    expect(() => parseVipFlag("10.96.0.10")).toThrow(/give ADDR:PORT/);
    expect(() => parseVipFlag("web:80")).toThrow(/not an IP address/);
  });

  it("builds the definition nkitd parses like a service file", () => {
    const s = serviceFromFlags("web", {
      vip: ["10.96.0.10:80/tcp", "10.96.0.10:443/tcp"],
      backend: ["10.47.0.5", "10.47.0.6"],
      affinity: "client-ip",
    });
    expect(s).toMatchObject({
      name: "web",
      vip: "10.96.0.10",
      affinity: "client-ip",
      backends: [
        { address: "10.47.0.5", port: 0 },
        { address: "10.47.0.6", port: 0 },
      ],
    });
    expect(() => serviceFromFlags("web", { vip: ["10.96.0.10:80", "10.96.0.11:81"] })).toThrow(
      /same address/,
    );
    expect(() => serviceFromFlags("web", { vip: ["10.96.0.10:80"], selector: ["app"] })).toThrow(
      /LABEL=VALUE/,
    );
  });
});

describe("HostPorts", () => {
  let dir: string;
  let table: RecordingTable;
  let manager: ServiceManager;
  let hostPorts: HostPorts;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "nkit-hostports-"));
    table = new RecordingTable();
    manager = new ServiceManager({ table, storeDir: join(dir, "services") });
    hostPorts = new HostPorts({ manager, hostAddresses: () => ["192.0.2.10", "2001:db8::10"] });
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  const pod = { ipv4: "10.47.0.5", ipv6: "fd47::5" };

  it("maps a host port on every host address and loopback, per family, to the pod", () => {
    hostPorts.claim("c1", [{ hostPort: 12000, containerPort: 80, protocol: "tcp", hostIP: "" }], pod);
    expect([...table.entries.keys()].sort()).toEqual([
      "127.0.0.1:12000/tcp",
      "192.0.2.10:12000/tcp",
      "[2001:db8::10]:12000/tcp",
      "[::1]:12000/tcp",
    ]);
    expect(table.entries.get("127.0.0.1:12000/tcp")?.backends).toEqual([{ address: "10.47.0.5", port: 80 }]);
    expect(table.entries.get("[::1]:12000/tcp")?.backends).toEqual([{ address: "fd47::5", port: 80 }]);
    expect(hostPorts.holders()).toEqual(["c1"]);
    hostPorts.release("c1");
    expect(table.entries.size).toBe(0);
  });

  it("lays wildcard host ports out again when the host's addresses change; a pinned hostIP stays", () => {
    let addresses = ["192.0.2.10"];
    const following = new HostPorts({ manager, hostAddresses: () => addresses });
    following.claim("c1", [{ hostPort: 12001, containerPort: 80, protocol: "tcp" }], pod);
    following.claim(
      "c2",
      [{ hostPort: 12002, containerPort: 80, protocol: "tcp", hostIP: "127.0.0.1" }],
      pod,
    );
    addresses = ["198.51.100.7", "2001:db8::7"];
    expect(following.readdress()).toEqual([]);
    expect([...table.entries.keys()].sort()).toEqual([
      "127.0.0.1:12001/tcp",
      "127.0.0.1:12002/tcp",
      "198.51.100.7:12001/tcp",
      "[2001:db8::7]:12001/tcp",
      "[::1]:12001/tcp",
    ]);
    following.release("c1");
    following.release("c2");
    expect(following.readdress()).toEqual([]);
    expect(table.entries.size).toBe(0);
  });

  it("publishes hostIP 0.0.0.0 and :: (nerdctl's -p H:C) on every host address and loopback of both families", () => {
    const every = [
      "127.0.0.1:18080/tcp",
      "192.0.2.10:18080/tcp",
      "[2001:db8::10]:18080/tcp",
      "[::1]:18080/tcp",
    ];
    for (const hostIP of ["0.0.0.0", "::"]) {
      hostPorts.claim("c1", [{ hostPort: 18080, containerPort: 8080, protocol: "tcp", hostIP }], pod);
      expect([...table.entries.keys()].sort(), hostIP).toEqual(every);
      expect(table.entries.get("[::1]:18080/tcp")?.backends).toEqual([{ address: "fd47::5", port: 8080 }]);
      hostPorts.release("c1");
    }
    // Both at once (Docker-style dual publishing) is one set of frontends.
    hostPorts.claim(
      "c1",
      [
        { hostPort: 18080, containerPort: 8080, protocol: "tcp", hostIP: "0.0.0.0" },
        { hostPort: 18080, containerPort: 8080, protocol: "tcp", hostIP: "::" },
      ],
      pod,
    );
    expect([...table.entries.keys()].sort()).toEqual(every);
    expect(() =>
      hostPorts.claim(
        "c2",
        [
          { hostPort: 18081, containerPort: 80, protocol: "tcp", hostIP: "0.0.0.0" },
          { hostPort: 18081, containerPort: 81, protocol: "tcp", hostIP: "::" },
        ],
        pod,
      ),
    ).toThrow(/host port 18081\/tcp on .* is mapped twice, to container ports 80 and 81/);
  });

  it("honours hostIP and the pod's families; UDP apart from TCP", () => {
    hostPorts.claim(
      "c1",
      [
        { hostPort: 53, containerPort: 5353, protocol: "UDP", hostIP: "127.0.0.1" },
        { hostPort: 53, containerPort: 5353, protocol: "tcp" },
      ],
      { ipv4: "10.47.0.5" },
    );
    expect([...table.entries.keys()].sort()).toEqual([
      "127.0.0.1:53/tcp",
      "127.0.0.1:53/udp",
      "192.0.2.10:53/tcp",
    ]);
    expect(() =>
      hostPorts.claim("c2", [{ hostPort: 1, containerPort: 1, protocol: "tcp", hostIP: "::1" }], {
        ipv4: "10.47.0.6",
      }),
    ).toThrow(/pod has no IPv6 address/);
    expect(() => hostPorts.claim("c2", [{ hostPort: 1, containerPort: 1, protocol: "sctp" }], pod)).toThrow(
      /sctp is not supported/,
    );
  });

  it("refuses a host port another container holds, naming it, and changes nothing", () => {
    hostPorts.claim("c1", [{ hostPort: 12000, containerPort: 80, protocol: "tcp" }], pod);
    const before = [...table.entries.keys()].sort();
    expect(() =>
      hostPorts.claim(
        "c2",
        [
          { hostPort: 12001, containerPort: 80, protocol: "tcp" },
          { hostPort: 12000, containerPort: 80, protocol: "tcp" },
        ],
        { ipv4: "10.47.0.6" },
      ),
    ).toThrow(/host port 12000\/tcp on 192\.0\.2\.10 is already mapped by container c1/);
    expect([...table.entries.keys()].sort()).toEqual(before);
    // The same container asking again (a repeated ADD) is fine.
    hostPorts.claim("c1", [{ hostPort: 12000, containerPort: 80, protocol: "tcp" }], pod);
    // A host port on an address a service already uses as its VIP is refused too.
    manager.upsert(
      parseServiceSpec(
        { name: "dns", vip: "192.0.2.10", ports: [{ port: 53, protocol: "udp" }], backends: ["10.47.0.9"] },
        "t",
      ),
      "api",
    );
    expect(() =>
      hostPorts.claim("c3", [{ hostPort: 53, containerPort: 53, protocol: "udp" }], { ipv4: "10.47.0.7" }),
    ).toThrow(/already the frontend of service dns/);
    expect(hostPorts.holders()).toEqual(["c1"]);
  });
});

describe("ServiceManager restart", () => {
  it("holds the datapath until every source is read, then removes only what no source wants", () => {
    const dir = mkdtempSync(join(tmpdir(), "nkit-svc-restart-"));
    try {
      const table = new RecordingTable();
      const spec = (name: string, vip: string) =>
        parseServiceSpec({ name, vip, ports: [{ port: 80 }], backends: ["10.47.0.5"] }, "t");
      const first = new ServiceManager({ table, storeDir: join(dir, "services") });
      first.replaceSource("config", [spec("kept", "10.96.0.1"), spec("dropped", "10.96.0.2")]);
      // A new nkitd over the same (pinned) maps: nothing changes until ready().
      const adopting = Object.assign(table, { list: () => [...table.entries.values()] });
      adopting.calls = [];
      const second = new ServiceManager({
        table: adopting,
        storeDir: join(dir, "services"),
        holdUntilReady: true,
      });
      second.replaceSource("config", [spec("kept", "10.96.0.1")]);
      expect(adopting.calls).toEqual([]);
      second.ready();
      expect(adopting.calls).toEqual(["remove 10.96.0.2:80/tcp"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("ServiceManager at scale", () => {
  it("holds 10,000 services from one source and resolves a sample of 500 to the right backends", () => {
    const dir = mkdtempSync(join(tmpdir(), "nkit-svc-scale-"));
    try {
      const table = new RecordingTable();
      const m = new ServiceManager({ table, storeDir: join(dir, "services") });
      const vip = (i: number) => `10.96.${i >> 8}.${i & 0xff}`;
      const be = (i: number) => `10.47.${(i >> 8) & 0xff}.${i & 0xff}`;
      const specs = Array.from({ length: 10_000 }, (_, i) =>
        parseServiceSpec(
          { name: `s${i}`, vip: vip(i), ports: [{ port: 80, targetPort: 8080 }], backends: [be(i)] },
          "t",
        ),
      );
      expect(m.replaceSource("file", specs, "/big.yaml")).toEqual([]);
      expect(table.entries.size).toBe(10_000);
      for (let k = 0; k < 500; k++) {
        const i = (k * 7919) % 10_000;
        expect(table.entries.get(`${vip(i)}:80/tcp`)?.backends).toEqual([{ address: be(i), port: 8080 }]);
      }
      // One more service, and one conflicting with the 10,000: only the bookkeeping of the one.
      table.calls = [];
      m.upsert(
        parseServiceSpec(
          { name: "extra", vip: "10.97.0.1", ports: [{ port: 80 }], backends: ["10.47.0.1"] },
          "t",
        ),
        "api",
      );
      expect(() => m.upsert(spec5000(), "api")).toThrow(/already the frontend of service s5000/);
      expect(table.calls).toEqual(["set 10.97.0.1:80/tcp"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

function spec5000() {
  return parseServiceSpec(
    { name: "clash", vip: "10.96.19.136", ports: [{ port: 80 }], backends: ["10.47.0.1"] },
    "t",
  );
}
