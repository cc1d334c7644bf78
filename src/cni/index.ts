// nkitd's CNI endpoint for nkit-cni: protocol, handler, server. startCniEndpoint wires them to the
// daemon's EndpointManager and pod lifecycle.
import { NkitCniHandler, type NkitCniHandlerOptions } from "./handler.js";
import { CniServer, type CniServerOptions } from "./server.js";

export { type Attachment, type AttachmentStore, openAttachmentStore } from "./attachments.js";
export { CniCode, CniError, toCniError } from "./codes.js";
export {
  type CniHandler,
  type CniPodLifecycle,
  type HostPortClaims,
  NkitCniHandler,
  probeEndpointLinks,
} from "./handler.js";
export * from "./protocol.js";
export * from "./result.js";
export { CniServer, type CniServerOptions } from "./server.js";

export interface CniEndpointOptions extends NkitCniHandlerOptions {
  /** <paths.run>/cni.sock in nkitd. */
  socketPath: string;
  observe?: CniServerOptions["observe"];
}

export async function startCniEndpoint(o: CniEndpointOptions): Promise<CniServer> {
  const { socketPath, observe, ...handlerOptions } = o;
  const handler = new NkitCniHandler(handlerOptions);
  return CniServer.start({
    socketPath,
    handler,
    ...(o.log ? { log: o.log } : {}),
    ...(observe ? { observe } : {}),
  });
}
