// Reads allocations from Nomad's HTTP API: the identity (namespace, job, group, tasks) of an
// allocation nkit-cni wired. Nomad 1.6 sends no CNI_ARGS, so the allocation id is all the ADD carries;
// later versions pass NOMAD_* args, which are taken as they are. Wiring never waits for this.
import type { NomadClient } from "./client.js";

/** Label keys nkit gives an allocation's endpoint. */
export const NomadLabel = {
  namespace: "nkit.io/nomad-namespace",
  job: "nkit.io/nomad-job",
  group: "nkit.io/nomad-group",
  tasks: "nkit.io/nomad-tasks",
  alloc: "nkit.io/nomad-alloc",
} as const;

export interface NomadAllocation {
  id: string;
  namespace: string;
  job: string;
  group: string;
  tasks: string[];
}

export function allocationLabels(a: NomadAllocation): Record<string, string> {
  return {
    [NomadLabel.namespace]: a.namespace,
    [NomadLabel.job]: a.job,
    [NomadLabel.group]: a.group,
    [NomadLabel.tasks]: a.tasks.join(","),
    [NomadLabel.alloc]: a.id,
  };
}

/** The identity later Nomad versions pass as CNI_ARGS (NOMAD_ALLOC_ID, NOMAD_JOB_ID, ...), if present. */
export function allocationFromArgs(
  id: string,
  args: Readonly<Record<string, string>>,
): NomadAllocation | undefined {
  if (!args.NOMAD_ALLOC_ID || !args.NOMAD_JOB_ID) return undefined;
  return {
    id: args.NOMAD_ALLOC_ID || id,
    namespace: args.NOMAD_NAMESPACE ?? "default",
    job: args.NOMAD_JOB_ID,
    group: args.NOMAD_GROUP_NAME ?? "",
    tasks: args.NOMAD_TASK_NAME ? [args.NOMAD_TASK_NAME] : [],
  };
}

const ALLOC_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The allocation's identity from Nomad's API, or undefined when Nomad does not know it (or the id is no allocation id). */
export async function lookupAllocation(nomad: NomadClient, id: string): Promise<NomadAllocation | undefined> {
  if (!ALLOC_ID.test(id)) return undefined;
  const a = await nomad.allocation(id);
  if (!a) return undefined;
  const tasks = Object.keys(a.AllocatedResources?.Tasks ?? a.TaskResources ?? {}).sort();
  return { id: a.ID, namespace: a.Namespace ?? "default", job: a.JobID, group: a.TaskGroup, tasks };
}
