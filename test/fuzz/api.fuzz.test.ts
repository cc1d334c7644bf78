// nkitd's gRPC API under fuzzing, over its real unix socket (a live nkitd from dist/, private dirs):
// every unary method gets (1) arbitrary request bytes and (2) real requests with one field replaced
// by an arbitrary value. Every call must be answered: OK, or a refusal carrying a stable nkit code
// that is not NKIT_INTERNAL (an unhandled exception) — never a dropped connection, a timeout or a
// dead nkitd. What a call made (a service, a wired endpoint) is removed right after, so the state
// stays small and the run shows none leaked. Needs root (nkitd wires a real netns).
import {
  type Client,
  credentials,
  Client as GrpcClient,
  Metadata,
  type ServiceError,
  status,
} from "@grpc/grpc-js";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { NkitClient } from "../../src/api/client.js";
import { apiServices } from "../../src/api/proto.js";
import { createNetns, type TestNetns } from "../helpers/netns.js";
import { Nkitd, type NkitdSetup, nkitdSetup, requireDist } from "../helpers/nkitd.js";
import { Scope } from "../helpers/scope.js";
import { mutated, params } from "./fuzz.js";

const scope = new Scope();
let setup: NkitdSetup;
let nkitd: Nkitd;
let api: NkitClient;
let raw: Client;
let pod: TestNetns;

interface Method {
  name: string;
  path: string;
  requestSerialize: (req: unknown) => Buffer;
  responseStream: boolean;
}

const methods = (): Method[] => {
  const all = { ...apiServices().nkit, ...apiServices().admin } as unknown as Record<string, Method>;
  return Object.entries(all)
    .filter(([, m]) => !m.responseStream)
    .map(([name, m]) => ({ ...m, name }));
};

/** Valid requests of every unary method: the bases the structured property mutates. */
function bases(netnsPath: string): Record<string, unknown> {
  return {
    Status: {},
    ListEndpoints: {},
    GetEndpoint: { id: "fz-ep" },
    Ipam: {},
    ListMaps: {},
    DumpMap: { name: "nk_endpoints" },
    Metrics: {},
    ListServices: {},
    GetService: { name: "fz-svc" },
    AddService: {
      service: {
        name: "fz-svc",
        vip: "10.96.77.7",
        ports: [{ port: 80, protocol: "tcp", targetPort: 8080, name: "http" }],
        backends: [{ address: "10.1.2.3", port: 0 }],
        selector: {},
        affinity: "",
        affinityTimeoutSeconds: 0,
        external: false,
      },
    },
    DeleteService: { name: "fz-svc" },
    ListNat: {},
    ListNodes: {},
    ForgetNode: { name: "fz-node" },
    LeaveCluster: { force: false },
    WireEndpoint: {
      id: "fz-ep",
      netnsPath,
      ifName: "eth0",
      addresses: { ipv4: "", ipv6: "" },
      labels: { app: "fz" },
    },
    UnwireEndpoint: { id: "fz-ep" },
  };
}

/** A refusal nkitd meant: a status with a stable nkit code other than the unhandled-error one. */
const ANSWERED = new Set([
  status.OK,
  status.INVALID_ARGUMENT,
  status.NOT_FOUND,
  status.ALREADY_EXISTS,
  status.FAILED_PRECONDITION,
  status.RESOURCE_EXHAUSTED,
  status.OUT_OF_RANGE,
  status.INTERNAL, // only with a typed code (a netlink or BPF failure): checked below
]);

interface Outcome {
  code: status;
  nkitCode: string;
  details: string;
  response: Buffer | undefined;
}

/** What a failed call carried: its status and the nkit code nkitd attached. */
function refusal(err: ServiceError): Outcome {
  const meta = err.metadata?.get("nkit-error-code")[0];
  return {
    code: err.code,
    nkitCode: typeof meta === "string" ? meta : "",
    details: err.details,
    response: undefined,
  };
}

function call(path: string, body: Buffer): Promise<Outcome> {
  return new Promise((resolve) => {
    raw.makeUnaryRequest(
      path,
      (b: Buffer) => b,
      (b: Buffer) => b,
      body,
      new Metadata(),
      { deadline: Date.now() + 15_000 },
      (err: ServiceError | null, res?: Buffer) => {
        if (!err) {
          resolve({ code: status.OK, nkitCode: "", details: "", response: res });
          return;
        }
        resolve(refusal(err));
      },
    );
  });
}

function expectAnswered(method: string, o: Outcome): void {
  const what = `${method}: ${status[o.code]} ${o.nkitCode} ${o.details}`;
  expect(ANSWERED.has(o.code), what).toBe(true);
  if (o.code !== status.OK) {
    expect(o.nkitCode, what).toMatch(/^NKIT_[A-Z_]+$/);
    expect(o.nkitCode, what).not.toBe("NKIT_INTERNAL");
  }
}

/** Undoes what an accepted call made, so the fuzzing never piles state up. */
async function undo(method: string, o: Outcome): Promise<void> {
  if (o.code !== status.OK || !o.response) return;
  if (method === "AddService") {
    const svc = apiServices().nkit.AddService.responseDeserialize(o.response);
    await api.deleteService(svc.name);
  } else if (method === "WireEndpoint") {
    const ep = apiServices().admin.WireEndpoint.responseDeserialize(o.response);
    await api.unwireEndpoint(ep.id);
  }
}

beforeAll(async () => {
  requireDist();
  setup = await nkitdSetup(scope, "fzapi");
  nkitd = await Nkitd.start(scope, ["--config", setup.config]);
  api = new NkitClient(setup.socket);
  scope.defer(() => api.close());
  raw = new GrpcClient(`unix:${setup.socket}`, credentials.createInsecure());
  scope.defer(() => raw.close());
  pod = await createNetns(scope, "fzapi");
}, 60_000);

afterAll(() => scope.close(), 60_000);

describe("the gRPC API (fuzz, over nkitd's socket)", () => {
  it("answers arbitrary request bytes on every unary method", async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...methods()), fc.uint8Array({ maxLength: 400 }), async (m, bytes) => {
        const o = await call(m.path, Buffer.from(bytes));
        expectAnswered(m.name, o);
        await undo(m.name, o);
      }),
      params(),
    );
  });

  it("answers real requests with any one field replaced by any value", async () => {
    const valid = bases(pod.path);
    const perMethod = methods().map((m) =>
      mutated(valid[m.name] ?? {}).map((req) => {
        try {
          return { m, body: m.requestSerialize(req) };
        } catch {
          // The client's own encoder refused the value: no request to send.
          return { m, body: undefined };
        }
      }),
    );
    const unmutated = methods().map((m) => fc.constant({ m, body: m.requestSerialize(valid[m.name] ?? {}) }));
    await fc.assert(
      fc.asyncProperty(fc.oneof(...perMethod, ...unmutated), async ({ m, body }) => {
        if (!body) return;
        const o = await call(m.path, body);
        expectAnswered(m.name, o);
        await undo(m.name, o);
      }),
      params(),
    );
  });

  it("answers arbitrary bytes on the Monitor stream: a refusal, or a stream that runs until cancelled", async () => {
    const path = apiServices().nkit.Monitor.path;
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 200 }), async (bytes) => {
        const o = await new Promise<Outcome>((resolve) => {
          const stream = raw.makeServerStreamRequest(
            path,
            (b: Buffer) => b,
            (b: Buffer) => b,
            Buffer.from(bytes),
            new Metadata(),
            {},
          );
          stream.on("data", () => undefined);
          stream.on("error", (err: ServiceError) => {
            resolve(refusal(err));
          });
          // Still open after a while: a valid subscription; the client ends it.
          setTimeout(() => stream.cancel(), 30);
        });
        if (o.code === status.CANCELLED) return;
        expectAnswered("Monitor", o);
      }),
      { ...params(), numRuns: Math.min(params().numRuns ?? 0, 20_000) },
    );
  });

  it("is alive and holds nothing the fuzzing made", async () => {
    expect(nkitd.proc.running()).toBe(true);
    expect((await api.status()).endpointCount).toBe(0);
    expect((await api.listServices()).services.map((s) => s.name)).toEqual([]);
    expect((await api.ipam()).allocations).toEqual([]);
  });
});
