/**
 * Reconcile stages 2 and 3: how many replicas a deployment should have now
 * (its fixed count, or what the autoscaler makes of its demand) and whether a
 * replica of its version may start (failure back-off). Both carry their memory
 * from one tick to the next in the ControllerRecord.
 */
import { autoscale, initialAutoscalerState, type AutoscalerState } from "../autoscaler/policy.js";
import type { QueueDepth } from "../queue/queue-depths.js";
import type { AutoscalingView, ControllerRecord, DeploymentRecord } from "../shared/records.js";
import type { ReconcileEvent } from "./reconcile-types.js";

export interface ScalingInput {
  record: DeploymentRecord;
  memory: ControllerRecord | undefined;
  autoscaler: AutoscalerState | undefined;
  queue: QueueDepth | undefined;
  /** Requests the deployment's replicas run now, counted one by one. */
  inflight: number;
  /** Replicas serving now, of any version. */
  serving: number;
  now: number;
}

export interface Scaling {
  target: number;
  autoscaling?: AutoscalingView;
  /** The autoscaler's new state, when it took a sample. */
  state?: AutoscalerState;
  event?: ReconcileEvent;
}

/** The target: the fixed replica count, or the autoscaler's, sampled once per metrics interval. */
export function scaleTarget(input: ScalingInput): Scaling {
  const { record, memory, now } = input;
  const cfg = record.spec.autoscalingConfig;
  if (!cfg) return { target: record.spec.numReplicas ?? 0 };
  const target = Math.min(cfg.maxReplicas, Math.max(cfg.minReplicas, memory?.target ?? cfg.initialReplicas));
  const autoscaling: AutoscalingView = memory?.autoscaling ? { ...memory.autoscaling } : { demand: 0, desired: target };
  const st = input.autoscaler ?? initialAutoscalerState();
  const lastAt = st.samples[st.samples.length - 1]?.at;
  if (lastAt !== undefined && now - lastAt < cfg.metricsIntervalS * 1000 - 1) return { target, autoscaling };
  const q: QueueDepth = input.queue ?? { waiting: 0, active: 0, failed: 0 };
  // Jobs in the queue, or the requests waited on as their requesters count them (batch jobs carry many),
  // whichever is more: jobs added by other producers are seen only in the queue.
  const demand = Math.max(q.waiting + Math.max(q.active, input.inflight), q.requested ?? 0);
  const result = autoscale(st, { config: cfg, now, demand, currentTarget: target, readyReplicas: Math.min(input.serving, target) });
  const next: AutoscalingView = { demand: result.avgDemand, desired: result.desired, ...(autoscaling.lastDecision ? { lastDecision: autoscaling.lastDecision } : {}) };
  const d = result.decision;
  if (!d) return { target, autoscaling: next, state: result.state };
  next.lastDecision = { at: d.at, from: d.from, to: d.to, reason: d.reason };
  const event: ReconcileEvent = { deployment: record.spec.name, level: "info", message: `autoscaler: ${d.from} → ${d.to} replicas (${d.reason})` };
  return { target: result.target, autoscaling: next, state: result.state, event };
}

/** Back-off after consecutive failed starts: 1 s, 2 s, 4 s, … capped at 60 s. */
export function backoffMs(failures: number): number {
  return failures <= 0 ? 0 : Math.min(60_000, 1000 * 2 ** (failures - 1));
}

export interface Backoff {
  /** Consecutive failed starts of the current version. */
  failures: number;
  lastError?: string;
  /** Earliest time a replica of the current version may start. */
  retryAt: number;
}

/** Counts this tick's failed starts onto the remembered ones; a new version starts with a clean slate. */
export function backoffAfter(record: DeploymentRecord, memory: ControllerRecord | undefined, newFailures: number, newError: string | undefined, now: number): Backoff {
  const same = memory !== undefined && memory.codeVersion === record.codeVersion;
  const failures = (same ? memory.failures : 0) + newFailures;
  const lastError = newError ?? (same ? memory.lastError : undefined);
  // A new version never waits out the back-off of the one it replaces.
  const retryAt = newFailures > 0 ? now + backoffMs(failures) : same ? memory.retryAt : 0;
  return { failures, retryAt, ...(lastError !== undefined ? { lastError } : {}) };
}

/** Once the version serves in full with nothing old left and nothing failing, its failures are forgiven. */
export function backoffSettled(backoff: Backoff, converged: boolean, newFailures: number): Backoff {
  if (!converged || newFailures > 0) return backoff;
  return { failures: 0, retryAt: backoff.retryAt };
}
