/**
 * Reconcile stage 1: sorts a deployment's replicas into those that stay and
 * those that go (lost with their host, failed, stopped, or drained before they
 * ran), and describes the ones that stay as the rollout planner sees them.
 */
import type { DeploymentRecord, ReplicaAssignment, ReplicaStatus } from "../shared/records.js";
import type { ObservedHost, ReconcileEvent } from "./reconcile-types.js";
import type { PlannerReplica } from "./rollout-planner.js";

export interface ReplicaClasses {
  /** Replicas that stay, as assigned. */
  live: ReplicaAssignment[];
  /** The same replicas as the rollout planner sees them. */
  planned: PlannerReplica[];
  /** Replicas whose assignment and status go. */
  remove: string[];
  releaseLocks: Array<{ deployment: string; workerId: string }>;
  events: ReconcileEvent[];
  /** Failed starts of the deployment's current version seen now, and the last one's error. */
  newFailures: number;
  lastError?: string;
}

export function phaseOf(a: ReplicaAssignment, status: ReplicaStatus | undefined): PlannerReplica["phase"] {
  if (a.desired === "drain" || status?.state === "draining") return "draining";
  if (a.host === null) return "pending";
  if (status?.state === "running" || status?.state === "reconfiguring") return "serving";
  return "starting";
}

/** True when the replica is over: it failed or stopped, or it was drained before it ever ran. */
function isOver(a: ReplicaAssignment, status: ReplicaStatus | undefined): boolean {
  if (status?.state === "failed" || status?.state === "stopped") return true;
  // A drained replica without a status never ran: its host saw it only after its version was
  // replaced, and hosts start only current versions. (Had it just started, its host drains it
  // when the assignment goes.) Waiting for it to report would wait forever.
  return a.desired === "drain" && (a.host === null || status === undefined);
}

export function classifyReplicas(
  name: string,
  assignments: readonly ReplicaAssignment[],
  record: DeploymentRecord | undefined,
  aliveHosts: ReadonlyMap<string, ObservedHost>,
  replicaStatus: ReadonlyMap<string, ReplicaStatus>,
): ReplicaClasses {
  const out: ReplicaClasses = { live: [], planned: [], remove: [], releaseLocks: [], events: [], newFailures: 0 };
  for (const a of assignments) {
    const status = replicaStatus.get(a.id);
    const host = a.host === null ? undefined : aliveHosts.get(a.host);
    if (a.host !== null && !host) {
      out.remove.push(a.id);
      if (status?.workerId) out.releaseLocks.push({ deployment: name, workerId: status.workerId });
      out.events.push({ deployment: name, level: "warn", message: `replica ${a.id} lost with host ${a.host}; replacing it` });
      continue;
    }
    if (isOver(a, status)) {
      out.remove.push(a.id);
      if (status?.state === "failed" && a.desired === "run" && record && status.codeVersion === record.codeVersion) {
        out.newFailures++;
        out.lastError = status.error ?? "replica failed";
        out.events.push({ deployment: name, level: "warn", message: `replica ${a.id} failed: ${out.lastError}` });
      }
      continue;
    }
    out.live.push(a);
    // Replicas on a draining host are replaced like an old version: successors first, then drain.
    const planned: PlannerReplica = { id: a.id, codeVersion: a.codeVersion, phase: phaseOf(a, status), inflight: status?.inflight ?? 0, createdAt: a.createdAt };
    if (host?.draining) planned.mustMove = true;
    out.planned.push(planned);
  }
  return out;
}
