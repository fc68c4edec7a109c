/**
 * What one reconcile tick reads and what it decides: the types its stages
 * share. The tick itself is reconcile.ts; the Redis writes that carry out
 * decisions are decision-ops.ts.
 */
import type { AutoscalerState } from "../autoscaler/policy.js";
import type { QueueDepth } from "../queue/queue-depths.js";
import type { ControllerRecord, DeploymentRecord, DeploymentStatusRecord, HostInfo, ReplicaAssignment, ReplicaStatus, RolloutRecord } from "../shared/records.js";
import type { RevisionInputs, RevisionWrite } from "./reconcile-revisions.js";

export type ObservedHost = HostInfo & { alive: boolean };

export interface ObservedState {
  now: number;
  deployments: ReadonlyMap<string, DeploymentRecord>;
  /** The controller's own memory of each deployment, as the last leader wrote it. */
  memory: ReadonlyMap<string, ControllerRecord>;
  hosts: ReadonlyArray<ObservedHost>;
  assignments: ReadonlyMap<string, ReplicaAssignment>;
  replicaStatus: ReadonlyMap<string, ReplicaStatus>;
  queues: ReadonlyMap<string, QueueDepth>;
  autoscaler: ReadonlyMap<string, AutoscalerState>;
  /** The leader's record of each deployment's latest rollout. @default none remembered */
  rollouts?: ReadonlyMap<string, RolloutRecord>;
  /** The revisions of the deployments that need them this tick. @default none read */
  revisions?: RevisionInputs;
}

export interface ReconcileEvent {
  deployment: string;
  message: string;
  level: "info" | "warn";
}

export interface Decisions {
  /** Assignments to write (new ones, drains, placements). */
  upsert: ReplicaAssignment[];
  /** Replica ids whose assignment and status are deleted. */
  remove: string[];
  /** Job locks to release: the workers of replicas lost with their host. */
  releaseLocks: Array<{ deployment: string; workerId: string }>;
  statuses: DeploymentStatusRecord[];
  /** The controller's memory of each deployment, for the next tick (or the next leader). */
  memory: Map<string, ControllerRecord>;
  /** Deleted deployments that are fully gone: drop their status, memory, autoscaler state and queue. */
  forget: string[];
  /** Hosts dead for long enough to be dropped from the host list. */
  forgetHosts: string[];
  autoscaler: Map<string, AutoscalerState>;
  /** Rollout records that changed; null: a forgotten deployment's record goes. */
  rollouts: Map<string, RolloutRecord | null>;
  /** Revision outcomes and automatic rollbacks: each written on its own, only if what it read is unchanged. */
  revisionWrites: RevisionWrite[];
  events: ReconcileEvent[];
}

export function noDecisions(): Decisions {
  return { upsert: [], remove: [], releaseLocks: [], statuses: [], memory: new Map(), forget: [], forgetHosts: [], autoscaler: new Map(), rollouts: new Map(), revisionWrites: [], events: [] };
}
