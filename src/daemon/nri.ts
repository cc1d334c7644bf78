// nkitd's NRI front door: containerd's pod sandbox events drive the CRI pod lifecycle.
import type { Logger } from "../log.js";
import { nriMetrics, timeWiring } from "../metrics/index.js";
import { NriPlugin, type NriPodSandbox } from "../nri/index.js";
import type { PodLifecycle, PodSandbox } from "../pods/lifecycle.js";
import type { NkitdConfig } from "./config.js";

function toPod(p: NriPodSandbox): PodSandbox {
  return {
    id: p.id,
    name: p.name,
    namespace: p.namespace,
    uid: p.uid,
    labels: p.labels,
    annotations: p.annotations,
    netnsPath: p.netnsPath,
  };
}

/** Counts the event and its failure; rethrows so the runtime sees the error (RUN fails the pod). */
async function counted<T>(event: string, fn: () => Promise<T>): Promise<T> {
  nriMetrics.event(event);
  try {
    return await fn();
  } catch (e) {
    nriMetrics.error(event);
    throw e;
  }
}

export function startNri(config: NkitdConfig, pods: PodLifecycle, log: Logger): NriPlugin {
  const plugin = new NriPlugin({
    socketPath: config.nri.socket,
    name: "nkit",
    index: config.nri.index,
    log: log.child({ component: "nri" }),
    handlers: {
      synchronize: (sandboxes) =>
        counted("synchronize", async () => {
          await pods.synchronize(sandboxes.map(toPod));
        }),
      runPodSandbox: (p) =>
        counted("run_pod_sandbox", async () => {
          await timeWiring("wire", () => pods.run(toPod(p)));
        }),
      stopPodSandbox: (p) =>
        counted("stop_pod_sandbox", async () => {
          await timeWiring("unwire", () => pods.stop(toPod(p)));
        }),
      removePodSandbox: (p) =>
        counted("remove_pod_sandbox", async () => {
          await pods.remove(toPod(p));
        }),
    },
  });
  plugin.on("connected", () => log.info({ socket: plugin.socketPath }, "NRI connected"));
  plugin.on("disconnected", () => log.warn({ socket: plugin.socketPath }, "NRI disconnected; reconnecting"));
  plugin.start();
  return plugin;
}
