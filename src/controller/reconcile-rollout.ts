/**
 * Reconcile stage 4: turns the rollout planner's decision into replicas —
 * new assignments to start, live ones to drain — and measures how far the
 * deployment is from its target afterwards.
 */
import type { DeploymentRecord, ReplicaAssignment, ResourceSet } from "../shared/records.js";
import { MEMORY_RESOURCE } from "../spec/deployment-spec.js";
import { versionLabel } from "../spec/version-label.js";
import { isOutdated, planRollout, type PlannerReplica, type RolloutDecision } from "./rollout-planner.js";

/** The resources one replica of a deployment reserves. */
export function replicaResources(record: DeploymentRecord): ResourceSet {
  const o = record.spec.actorOptions;
  return { CPU: o.numCpus, GPU: o.numGpus, ...o.resources, ...(o.memoryMiB !== undefined ? { [MEMORY_RESOURCE]: o.memoryMiB } : {}) };
}

/** A new replica of the deployment's current version, waiting for a host. */
export function newReplica(id: string, record: DeploymentRecord, now: number): ReplicaAssignment {
  const { spec, codeVersion } = record;
  return { id, deployment: spec.name, codeVersion, version: versionLabel(record), host: null, desired: "run", resources: replicaResources(record), gpuIds: [], createdAt: now };
}

export interface RolloutStep {
  decision: RolloutDecision;
  /** Replicas with a host to drain (their assignment, now desired `drain`). */
  drain: ReplicaAssignment[];
  /** Replicas to drain that never had a host: removed outright. */
  drop: string[];
  start: ReplicaAssignment[];
}

export function rolloutStep(
  record: DeploymentRecord,
  live: readonly ReplicaAssignment[],
  planned: readonly PlannerReplica[],
  target: number,
  canStart: boolean,
  newId: (deployment: string) => string,
  now: number,
): RolloutStep {
  const decision = planRollout({ target, codeVersion: record.codeVersion, replicas: planned, canStart });
  const step: RolloutStep = { decision, drain: [], drop: [], start: [] };
  if (decision.drain.length > 0) {
    const byId = new Map(live.map((a) => [a.id, a]));
    for (const id of decision.drain) {
      const a = byId.get(id);
      if (!a) continue;
      if (a.host === null) step.drop.push(id);
      else step.drain.push({ ...a, desired: "drain" });
    }
  }
  for (let i = 0; i < decision.start; i++) step.start.push(newReplica(newId(record.spec.name), record, now));
  return step;
}

export interface Progress {
  target: number;
  /** Replicas serving, of any version. */
  running: number;
  /** Replicas of the current version serving (and not due to move). */
  updated: number;
  /** True while a replica of another version (or one that must move) is still not draining after this step. */
  oldLeft: boolean;
}

export function progressOf(record: DeploymentRecord, planned: readonly PlannerReplica[], drained: readonly string[], target: number): Progress {
  const serving = planned.filter((r) => r.phase === "serving");
  const drainedNow = new Set(drained);
  return {
    target,
    running: serving.length,
    updated: serving.filter((r) => !isOutdated(r, record.codeVersion)).length,
    oldLeft: planned.some((r) => isOutdated(r, record.codeVersion) && r.phase !== "draining" && !drainedNow.has(r.id)),
  };
}
