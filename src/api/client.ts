// Typed client of the nkit API (proto/nkit/v1) over nkitd's unix socket.
import { Client, type ClientReadableStream, credentials, type MethodDefinition } from "@grpc/grpc-js";
import { fromServiceError } from "./errors.js";
import { apiServices, DEFAULT_API_SOCKET } from "./proto.js";
import type * as T from "./types.js";

export interface ClientOptions {
  /** Per-call deadline for unary calls, ms (default 10 s). */
  timeoutMs?: number;
}

export interface MonitorStream {
  /** Resolves once nkitd confirmed the subscription (events after this point are delivered). */
  ready: Promise<void>;
  /** Resolves when the stream ends (cancel, server shutdown); rejects with an ApiError on failure. */
  done: Promise<void>;
  cancel(): void;
}

export class NkitClient {
  private readonly client: Client;
  private readonly timeoutMs: number;

  constructor(
    readonly socket: string = DEFAULT_API_SOCKET,
    opts: ClientOptions = {},
  ) {
    this.client = new Client(`unix:${socket}`, credentials.createInsecure(), {
      "grpc.max_receive_message_length": 64 * 1024 * 1024,
    });
    this.timeoutMs = opts.timeoutMs ?? 10_000;
  }

  private unary<Req, Res>(m: MethodDefinition<Req, Res>, req: Req): Promise<Res> {
    return new Promise<Res>((resolve, reject) => {
      this.client.makeUnaryRequest(
        m.path,
        m.requestSerialize,
        m.responseDeserialize,
        req,
        { deadline: Date.now() + this.timeoutMs },
        (err, res) => {
          if (err) reject(fromServiceError(err, this.socket));
          else if (res === undefined) reject(fromServiceError(new Error("empty response"), this.socket));
          else resolve(res);
        },
      );
    });
  }

  status(): Promise<T.StatusResponse> {
    return this.unary(apiServices().nkit.Status, {});
  }
  listEndpoints(): Promise<T.ListEndpointsResponse> {
    return this.unary(apiServices().nkit.ListEndpoints, {});
  }
  getEndpoint(id: string): Promise<T.GetEndpointResponse> {
    return this.unary(apiServices().nkit.GetEndpoint, { id });
  }
  ipam(): Promise<T.IpamResponse> {
    return this.unary(apiServices().nkit.Ipam, {});
  }
  listMaps(): Promise<T.ListMapsResponse> {
    return this.unary(apiServices().nkit.ListMaps, {});
  }
  dumpMap(name: string): Promise<T.DumpMapResponse> {
    return this.unary(apiServices().nkit.DumpMap, { name });
  }
  metrics(): Promise<T.MetricsResponse> {
    return this.unary(apiServices().nkit.Metrics, {});
  }
  listNodes(): Promise<T.ListNodesResponse> {
    return this.unary(apiServices().nkit.ListNodes, {});
  }
  forgetNode(name: string): Promise<T.ForgetNodeResponse> {
    return this.unary(apiServices().nkit.ForgetNode, { name });
  }
  leaveCluster(force: boolean): Promise<T.LeaveClusterResponse> {
    return this.unary(apiServices().nkit.LeaveCluster, { force });
  }

  listNat(): Promise<T.ListNatResponse> {
    return this.unary(apiServices().nkit.ListNat, {});
  }

  listServices(): Promise<T.ListServicesResponse> {
    return this.unary(apiServices().nkit.ListServices, {});
  }
  getService(name: string): Promise<T.Service> {
    return this.unary(apiServices().nkit.GetService, { name });
  }
  /** Adds or replaces an API service; nkitd validates it like a service file. */
  addService(service: T.AddServiceRequest["service"]): Promise<T.Service> {
    return this.unary(apiServices().nkit.AddService, { service });
  }
  deleteService(name: string): Promise<T.Service> {
    return this.unary(apiServices().nkit.DeleteService, { name });
  }
  /** ADMIN: wires a netns onto the datapath (tests and tooling). */
  wireEndpoint(req: Partial<T.WireEndpointRequest> & { id: string; netnsPath: string }): Promise<T.Endpoint> {
    return this.unary(apiServices().admin.WireEndpoint, {
      ifName: "",
      addresses: { ipv4: "", ipv6: "" },
      labels: {},
      ...req,
    });
  }
  /** ADMIN: takes an endpoint off the datapath. */
  unwireEndpoint(id: string): Promise<T.UnwireEndpointResponse> {
    return this.unary(apiServices().admin.UnwireEndpoint, { id });
  }

  monitor(req: T.MonitorRequest, onEvent: (e: T.Event) => void): MonitorStream {
    const m = apiServices().nkit.Monitor;
    const call: ClientReadableStream<T.Event> = this.client.makeServerStreamRequest(
      m.path,
      m.requestSerialize,
      m.responseDeserialize,
      req,
    );
    let cancelled = false;
    const ready = new Promise<void>((resolve, reject) => {
      call.once("metadata", () => resolve());
      call.once("error", (e: unknown) => reject(fromServiceError(e, this.socket)));
    });
    ready.catch(() => undefined);
    const done = new Promise<void>((resolve, reject) => {
      call.on("data", (e: T.Event) => onEvent(e));
      call.on("end", () => resolve());
      call.on("error", (e: unknown) => {
        if (cancelled) resolve();
        else reject(fromServiceError(e, this.socket));
      });
    });
    return {
      ready,
      done,
      cancel: () => {
        cancelled = true;
        call.cancel();
      },
    };
  }

  close(): void {
    this.client.close();
  }
}
