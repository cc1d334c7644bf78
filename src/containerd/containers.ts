// Reads container metadata from containerd's API (its gRPC socket): the labels nerdctl and the user
// put on a container, which carry its name. Wiring never waits for this: callers ask after the
// container is wired and apply what comes back, so a missing or slow containerd only costs labels.
import { join } from "node:path";
import { Client, credentials, Metadata, status } from "@grpc/grpc-js";
import protobuf from "protobufjs";
import { ContainerdError, NkitError } from "../errors.js";
import { packageFile } from "../package-files.js";

export interface ContainerMetadata {
  id: string;
  namespace: string;
  labels: Record<string, string>;
}

/** containerd's container id of a CNI container id: nerdctl passes `<namespace>-<64 hex id>`. */
export function nerdctlContainerRef(cniContainerId: string): { namespace: string; id: string } | undefined {
  const m = /^(.+)-([0-9a-f]{64})$/.exec(cniContainerId);
  return m ? { namespace: m[1]!, id: m[2]! } : undefined;
}

const GET = "/containerd.services.containers.v1.Containers/Get";

function protoFile(): string {
  const found = packageFile(join("proto", "containerd", "containers.proto"));
  if (!found) {
    throw new NkitError(
      "NKIT_INTERNAL",
      "proto/containerd/containers.proto is missing from the nkit package",
    );
  }
  return found;
}

let types: { request: protobuf.Type; response: protobuf.Type } | undefined;

function messageTypes(): { request: protobuf.Type; response: protobuf.Type } {
  if (!types) {
    const root = protobuf.loadSync(protoFile());
    types = {
      request: root.lookupType("containerd.services.containers.v1.GetContainerRequest"),
      response: root.lookupType("containerd.services.containers.v1.GetContainerResponse"),
    };
  }
  return types;
}

export interface ContainerdClientOptions {
  /** containerd's gRPC socket (its `address`), e.g. /run/containerd/containerd.sock. */
  socket: string;
  /** Per call; default 2 s. */
  timeoutMs?: number;
}

export class ContainerdClient {
  private readonly client: Client;
  private readonly timeoutMs: number;

  constructor(opts: ContainerdClientOptions) {
    // No connection is made here: grpc-js connects on the first call and again after a failure, so
    // a containerd that starts later (or restarts) is found without a new client.
    this.client = new Client(`unix://${opts.socket}`, credentials.createInsecure());
    this.timeoutMs = opts.timeoutMs ?? 2000;
  }

  /** The container's metadata, or undefined when containerd has no such container in that namespace. */
  container(namespace: string, id: string): Promise<ContainerMetadata | undefined> {
    const { request, response } = messageTypes();
    const md = new Metadata();
    md.set("containerd-namespace", namespace);
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(
        GET,
        (req: { id: string }) => Buffer.from(request.encode(request.fromObject(req)).finish()),
        (buf: Buffer) =>
          response.toObject(response.decode(buf), { objects: true, defaults: true }) as {
            container?: { id: string; labels: Record<string, string> };
          },
        { id },
        md,
        { deadline: Date.now() + this.timeoutMs },
        (err, res) => {
          if (err) {
            if (err.code === status.NOT_FOUND) resolve(undefined);
            else {
              reject(
                new ContainerdError(
                  `containerd: get container ${namespace}/${id}: ${err.details || err.message}`,
                  {
                    cause: err,
                  },
                ),
              );
            }
            return;
          }
          const c = res?.container;
          resolve(c ? { id: c.id, namespace, labels: { ...c.labels } } : undefined);
        },
      );
    });
  }

  close(): void {
    this.client.close();
  }
}

/** Label keys nkit gives a container's endpoint for its name and containerd namespace. */
export const IdentityLabel = {
  name: "nkit.io/container-name",
  namespace: "nkit.io/container-namespace",
} as const;

/**
 * An endpoint's identity from its container's metadata: the user's labels (service selectors match
 * them) plus its name and namespace. nerdctl's own bookkeeping labels (`nerdctl/…`: networks, ports,
 * state dir, as JSON) are left out.
 */
export function identityLabels(c: ContainerMetadata): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(c.labels)) if (!k.startsWith("nerdctl/")) out[k] = v;
  out[IdentityLabel.name] = c.labels["nerdctl/name"] ?? c.id.slice(0, 12);
  out[IdentityLabel.namespace] = c.namespace;
  return out;
}

/** The identity labels of the container behind a CNI container id nerdctl made, if containerd knows it. */
export async function containerIdentity(
  client: Pick<ContainerdClient, "container">,
  cniContainerId: string,
): Promise<Record<string, string> | undefined> {
  const ref = nerdctlContainerRef(cniContainerId);
  if (!ref) return undefined;
  const meta = await client.container(ref.namespace, ref.id);
  return meta ? identityLabels(meta) : undefined;
}
