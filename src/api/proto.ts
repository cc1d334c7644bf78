// proto/nkit/v1/nkit.proto loaded at runtime with protobufjs reflection (no generated code, no build
// step) and exposed as typed gRPC method definitions. The .proto file ships with the package; it is
// found by walking up from this module (src/api or dist/api) to the package root.
import { join } from "node:path";
import type { MethodDefinition } from "@grpc/grpc-js";
import protobuf from "protobufjs";
import { NkitError } from "../errors.js";
import { packageFile } from "../package-files.js";
import type * as T from "./types.js";

const PROTO_PACKAGE = "nkit.v1";

function protoPath(): string {
  const found = packageFile(join("proto", "nkit", "v1", "nkit.proto"));
  if (!found)
    throw new NkitError("NKIT_INTERNAL", "proto/nkit/v1/nkit.proto is missing from the nkit package");
  return found;
}

let root: protobuf.Root | undefined;

function loadRoot(): protobuf.Root {
  if (!root) {
    const r = protobuf.loadSync(protoPath());
    r.resolveAll();
    root = r;
  }
  return root;
}

const TO_OBJECT: protobuf.IConversionOptions = {
  longs: String,
  enums: String,
  defaults: true,
  arrays: true,
  objects: true,
};

/** A typed codec for one message type. */
interface MessageCodec<M> {
  encode(message: M): Buffer;
  decode(buf: Buffer): M;
}

export function messageCodec<M>(name: string): MessageCodec<M> {
  const type = loadRoot().lookupType(`${PROTO_PACKAGE}.${name}`);
  return {
    encode: (message) => {
      const obj = message as unknown as Record<string, unknown>;
      return Buffer.from(type.encode(type.fromObject(obj)).finish());
    },
    decode: (buf) => type.toObject(type.decode(buf), TO_OBJECT) as unknown as M,
  };
}

/**
 * What the server's request decoder hands the handler for bytes that are no valid request: grpc-js
 * would answer a throwing decoder with INTERNAL, but a malformed request is the caller's error
 * (INVALID_ARGUMENT), which the handler raises (src/api/server.ts).
 */
export class UndecodableRequest {
  constructor(
    readonly type: string,
    readonly reason: string,
  ) {}
}

/** The gRPC method definitions of one proto service, as the .proto declares its methods. */
function serviceDefinition<S>(service: string): S {
  const svc = loadRoot().lookupService(`${PROTO_PACKAGE}.${service}`);
  const methods: Record<string, MethodDefinition<unknown, unknown>> = {};
  for (const m of svc.methodsArray) {
    const rq = messageCodec<unknown>(m.requestType);
    const rs = messageCodec<unknown>(m.responseType);
    methods[m.name] = {
      path: `/${PROTO_PACKAGE}.${service}/${m.name}`,
      requestStream: m.requestStream === true,
      responseStream: m.responseStream === true,
      requestSerialize: rq.encode,
      requestDeserialize: (buf: Buffer) => {
        try {
          return rq.decode(buf);
        } catch (e) {
          return new UndecodableRequest(m.requestType, (e as Error).message);
        }
      },
      responseSerialize: rs.encode,
      responseDeserialize: rs.decode,
      originalName: m.name.charAt(0).toLowerCase() + m.name.slice(1),
    };
  }
  return methods as S;
}

/** service Nkit: each method with the request and response types src/api/types.ts gives it. */
interface NkitService {
  Status: MethodDefinition<T.Empty, T.StatusResponse>;
  ListEndpoints: MethodDefinition<T.Empty, T.ListEndpointsResponse>;
  GetEndpoint: MethodDefinition<T.GetEndpointRequest, T.GetEndpointResponse>;
  Ipam: MethodDefinition<T.Empty, T.IpamResponse>;
  ListMaps: MethodDefinition<T.Empty, T.ListMapsResponse>;
  DumpMap: MethodDefinition<T.DumpMapRequest, T.DumpMapResponse>;
  Metrics: MethodDefinition<T.Empty, T.MetricsResponse>;
  Monitor: MethodDefinition<T.MonitorRequest, T.Event>;
  ListServices: MethodDefinition<T.Empty, T.ListServicesResponse>;
  GetService: MethodDefinition<T.GetServiceRequest, T.Service>;
  AddService: MethodDefinition<T.AddServiceRequest, T.Service>;
  DeleteService: MethodDefinition<T.DeleteServiceRequest, T.Service>;
  ListNat: MethodDefinition<T.Empty, T.ListNatResponse>;
  ListNodes: MethodDefinition<T.Empty, T.ListNodesResponse>;
  ForgetNode: MethodDefinition<T.ForgetNodeRequest, T.ForgetNodeResponse>;
  LeaveCluster: MethodDefinition<T.LeaveClusterRequest, T.LeaveClusterResponse>;
}

/** service NkitAdmin. */
interface NkitAdminService {
  WireEndpoint: MethodDefinition<T.WireEndpointRequest, T.Endpoint>;
  UnwireEndpoint: MethodDefinition<T.UnwireEndpointRequest, T.UnwireEndpointResponse>;
}

let services: { nkit: NkitService; admin: NkitAdminService } | undefined;

export function apiServices(): { nkit: NkitService; admin: NkitAdminService } {
  services ??= {
    nkit: serviceDefinition<NkitService>("Nkit"),
    admin: serviceDefinition<NkitAdminService>("NkitAdmin"),
  };
  return services;
}

export { API_SOCKET_NAME, DEFAULT_API_SOCKET } from "./defaults.js";
