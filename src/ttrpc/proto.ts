// Typed wrappers over the generated ttrpc envelopes (proto/nri/ttrpc.proto -> ./gen/ttrpc.js).
import type Long from "long";
import { ttrpc } from "./gen/ttrpc.js";

export interface KeyValue {
  key: string;
  value: string;
}

interface RequestEnvelope {
  service: string;
  method: string;
  payload: Uint8Array;
  /** Remaining deadline of the caller in nanoseconds; 0 = none. */
  timeoutNano: number;
  metadata: KeyValue[];
}

interface ResponseEnvelope {
  /** Absent on success (Go leaves it out); code 0 also means OK. */
  status: { code: number; message: string } | undefined;
  payload: Uint8Array;
}

/** int64 fields decode to Long when the `long` package is installed, to number otherwise. */
export function int64ToNumber(v: number | Long | null | undefined): number {
  if (v === null || v === undefined) return 0;
  return typeof v === "number" ? v : v.toNumber();
}

export function encodeRequest(r: RequestEnvelope): Uint8Array {
  return ttrpc.Request.encode({
    service: r.service,
    method: r.method,
    payload: r.payload,
    timeout_nano: r.timeoutNano,
    metadata: r.metadata,
  }).finish();
}

export function decodeRequest(data: Uint8Array): RequestEnvelope {
  const m = ttrpc.Request.decode(data);
  return {
    service: m.service,
    method: m.method,
    payload: m.payload,
    timeoutNano: int64ToNumber(m.timeout_nano),
    metadata: m.metadata.map((kv) => ({ key: kv.key ?? "", value: kv.value ?? "" })),
  };
}

export function encodeResponse(r: ResponseEnvelope): Uint8Array {
  // Like Go: no status on success, so an OK reply with an empty result is 0 bytes.
  const status = r.status && r.status.code !== 0 ? r.status : undefined;
  return ttrpc.Response.encode(status ? { status, payload: r.payload } : { payload: r.payload }).finish();
}

export function decodeResponse(data: Uint8Array): ResponseEnvelope {
  const m = ttrpc.Response.decode(data);
  const s = m.status;
  return {
    status: s ? { code: s.code ?? 0, message: s.message ?? "" } : undefined,
    payload: m.payload,
  };
}
