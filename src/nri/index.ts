export {
  encodeFrame,
  frameMessage,
  MUX_HEADER_SIZE,
  MUX_MAX_FRAME,
  MUX_WRITE_SPLIT,
  Multiplexer,
  type MultiplexerOptions,
  MuxConn,
  PLUGIN_SERVICE_CONN,
  RUNTIME_SERVICE_CONN,
} from "./mux.js";
export {
  DEFAULT_NRI_SOCKET,
  type NriConnectionInfo,
  type NriHandlerContext,
  type NriHandlers,
  NriPlugin,
  type NriPluginEvents,
  type NriPluginOptions,
} from "./plugin.js";
export {
  eventMask,
  type NriConfigureInfo,
  type NriContainer,
  NriEvent,
  type NriNamespace,
  type NriPodSandbox,
  PLUGIN_SERVICE,
  POD_SANDBOX_EVENTS,
  RUNTIME_SERVICE,
} from "./types.js";
