export { TtrpcError } from "../errors.js";
export { type CallOptions, TtrpcClient, type TtrpcClientOptions } from "./client.js";
export { Code, type CodeName, codeName, statusError } from "./codes.js";
export {
  decodeHeader,
  encodeMessage,
  Flag,
  HEADER_SIZE,
  LengthPrefixedDecoder,
  type LengthPrefixedDecoderOptions,
  MAX_MESSAGE_SIZE,
  MessageDecoder,
  type MessageHeader,
  MessageType,
} from "./framing.js";
export type { KeyValue } from "./proto.js";
export {
  errorToStatus,
  type TtrpcCall,
  type TtrpcMethod,
  TtrpcServer,
  TtrpcServerConnection,
  type TtrpcServerOptions,
} from "./server.js";
