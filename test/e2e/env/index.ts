// The e2e harness: a private containerd per suite (lanes 1.7 and 2.x), a typed CRI client, CNI helpers.
export {
  type BridgeNetworkOptions,
  bridgeConflist,
  bridgeConflistFile,
  type Conflist,
  type ConflistFile,
} from "./cni.js";
export type { InstancePaths } from "./config.js";
export {
  ContainerdEnv,
  type ContainerOptions,
  type ExecResult,
  type Pod,
  type RunPodOptions,
  type StartOptions,
  startContainerd,
  sweepStaleInstances,
} from "./containerd.js";
export { CriClient, CriError } from "./cri.js";
export { linkNames, links, mountsUnder, unixSocketListening, waitFor } from "./host.js";
export { binariesFor, IMAGES, type Lane, laneFromEnv } from "./lanes.js";
