// nkitd's CNI endpoint for nkit-cni: protocol, handler, server. startCniEndpoint wires them to the
// daemon's EndpointManager and pod lifecycle.
import type { Logger } from "../log.js";
import type { AttachmentStore } from "./attachments.js";
import {
  type CniPodLifecycle,
  type EndpointDatapath,
  type HostPortClaims,
  NkitCniHandler,
} from "./handler.js";
import { CniServer } from "./server.js";

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

export interface CniEndpointOptions {
  /** <paths.run>/cni.sock in nkitd. */
  socketPath: string;
  /** Attachment records (<paths.state>/cni-attachments.json in nkitd, opened by the daemon). */
  attachments: AttachmentStore;
  endpoints: EndpointDatapath;
  pods: CniPodLifecycle;
  /** Where portMappings are programmed (absent: recorded only). */
  hostPorts?: HostPortClaims;
  log?: Logger;
  notReady?: () => string | undefined;
}

export async function startCniEndpoint(o: CniEndpointOptions): Promise<CniServer> {
  const handler = new NkitCniHandler({
    endpoints: o.endpoints,
    pods: o.pods,
    attachments: o.attachments,
    ...(o.log ? { log: o.log } : {}),
    ...(o.notReady ? { notReady: o.notReady } : {}),
    ...(o.hostPorts ? { hostPorts: o.hostPorts } : {}),
  });
  return CniServer.start({ socketPath: o.socketPath, handler, ...(o.log ? { log: o.log } : {}) });
}
