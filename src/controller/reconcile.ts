/**
 * One controller tick as a pure function: from the desired state (deployments)
 * and the observed state (hosts, replicas, queues) to decisions. The loop in
 * controller.ts reads the state, calls this, and applies the result. Nothing
 * here depends on having seen an earlier event.
 *
 * A tick runs named stages, each pure and tested on its own: per deployment,
 * classify its replicas (reconcile-replicas.ts), scale and back off
 * (reconcile-scaling.ts), roll out (reconcile-rollout.ts), watch the rollout
 * (settle its revision, roll it back: reconcile-revisions.ts); then, across
 * all deployments, place what waits for a host (reconcile-placement.ts) and
 * write each deployment's status (reconcile-status.ts).
 */
import type { ControllerRecord, DeploymentRecord, ReplicaAssignment } from "../shared/records.js";
import { drainStranded, placeReplicas } from "./reconcile-placement.js";
import { classifyReplicas, type ReplicaClasses } from "./reconcile-replicas.js";
import { watchRollout, type WatchResult } from "./reconcile-revisions.js";
import { progressOf, rolloutStep, type RolloutStep } from "./reconcile-rollout.js";
import { backoffAfter, backoffSettled, scaleTarget, type Backoff, type Scaling } from "./reconcile-scaling.js";
import { deletingDraft, healthOf, statusRecord, type StatusDraft } from "./reconcile-status.js";
import { noDecisions, type Decisions, type ObservedHost, type ObservedState } from "./reconcile-types.js";

export { backoffMs } from "./reconcile-scaling.js";
export { replicaResources } from "./reconcile-rollout.js";
export type { Decisions, ObservedState } from "./reconcile-types.js";

/** Dead hosts stay listed (alive: false) this long after their last heartbeat. */
export const DEAD_HOST_RETENTION_MS = 5 * 60_000;

/** What a tick gathers across deployments, for placement and statuses at its end. */
interface Tick {
  readonly state: ObservedState;
  readonly aliveHosts: ReadonlyMap<string, ObservedHost>;
  readonly newId: (deployment: string) => string;
  readonly out: Decisions;
  /** Every replica that stays (existing ones as read, and new ones): what hosts hold, for placement. */
  readonly kept: ReplicaAssignment[];
  /** Replicas without a host: the only ones placement can act on. */
  readonly unplaced: ReplicaAssignment[];
  /** Replicas in `kept` that a rollout removed later in the tick (drained before they had a host). */
  readonly dropped: Set<string>;
  /** Assignments to write, by id: a later stage's change to a replica replaces an earlier one's. */
  readonly upserts: Map<string, ReplicaAssignment>;
  readonly drafts: StatusDraft[];
}

export function reconcile(state: ObservedState, newId: (deployment: string) => string): Decisions {
  const tick: Tick = {
    state,
    aliveHosts: new Map(state.hosts.filter((h) => h.alive).map((h) => [h.id, h])),
    newId,
    out: noDecisions(),
    kept: [],
    unplaced: [],
    dropped: new Set(),
    upserts: new Map(),
    drafts: [],
  };
  const byDeployment = groupByDeployment(state.assignments.values());
  for (const name of deploymentNames(state, byDeployment)) {
    const record = state.deployments.get(name);
    const classes = classifyReplicas(name, byDeployment.get(name) ?? [], record, tick.aliveHosts, state.replicaStatus);
    keep(tick, classes);
    if (record) reconcileDeployed(tick, record, classes);
    else reconcileDeleted(tick, name, classes);
  }
  tick.out.remove.push(...leftoverStatuses(state));
  placeAndReport(tick);
  tick.out.forgetHosts = deadHosts(state);
  return tick.out;
}

function groupByDeployment(assignments: Iterable<ReplicaAssignment>): Map<string, ReplicaAssignment[]> {
  const byDeployment = new Map<string, ReplicaAssignment[]>();
  for (const a of assignments) {
    const list = byDeployment.get(a.deployment);
    if (list) list.push(a);
    else byDeployment.set(a.deployment, [a]);
  }
  return byDeployment;
}

/** Deployments deployed, with replicas, or remembered: each is reconciled until it is forgotten. */
function deploymentNames(state: ObservedState, byDeployment: ReadonlyMap<string, unknown>): Set<string> {
  return new Set([...state.deployments.keys(), ...byDeployment.keys(), ...state.memory.keys()]);
}

function keep(tick: Tick, classes: ReplicaClasses): void {
  tick.out.remove.push(...classes.remove);
  tick.out.releaseLocks.push(...classes.releaseLocks);
  tick.out.events.push(...classes.events);
  for (const a of classes.live) {
    tick.kept.push(a);
    if (a.host === null) tick.unplaced.push(a);
  }
}

/** A deleted deployment: every replica drains; once none is left, it is forgotten. */
function reconcileDeleted(tick: Tick, name: string, classes: ReplicaClasses): void {
  const { live } = classes;
  for (const a of live) if (a.desired !== "drain") tick.upserts.set(a.id, { ...a, desired: "drain" });
  if (live.length === 0) {
    tick.out.forget.push(name);
    if (tick.state.rollouts?.has(name)) tick.out.rollouts.set(name, null);
    return;
  }
  const codeVersion = tick.state.memory.get(name)?.codeVersion ?? "";
  const running = classes.planned.filter((r) => r.phase === "serving").length;
  tick.drafts.push(deletingDraft(name, codeVersion, live.length, running, tick.state.now));
  tick.out.memory.set(name, { codeVersion, failures: 0, retryAt: 0, target: 0 });
}

function reconcileDeployed(tick: Tick, record: DeploymentRecord, classes: ReplicaClasses): void {
  const { state, out } = tick;
  const { now } = state;
  const name = record.spec.name;
  const memory = state.memory.get(name);
  const scaling = scaleTarget({
    record,
    memory,
    autoscaler: state.autoscaler.get(name),
    queue: state.queues.get(name),
    // Replicas count requests in flight one by one, also those that came in one batch job.
    inflight: classes.planned.reduce((sum, r) => sum + r.inflight, 0),
    serving: classes.planned.filter((r) => r.phase === "serving").length,
    now,
  });
  if (scaling.state) out.autoscaler.set(name, scaling.state);
  if (scaling.event) out.events.push(scaling.event);
  const failed = backoffAfter(record, memory, classes.newFailures, classes.lastError, now);
  const step = rolloutStep(record, classes.live, classes.planned, scaling.target, now >= failed.retryAt, tick.newId, now);
  applyStep(tick, step);
  const progress = progressOf(record, classes.planned, step.decision.drain, scaling.target);
  const backoff = backoffSettled(failed, progress.updated >= progress.target && !progress.oldLeft, classes.newFailures);
  const health = healthOf(progress, backoff, now);
  const replacing = classes.live.filter((a) => a.codeVersion === record.codeVersion && state.replicaStatus.get(a.id)?.replacement).map((a) => a.id);
  const watch = watchRollout({ record, previous: state.rollouts?.get(name), health: health.status, backoff, progress, replacing, revisions: state.revisions, now });
  keepWatch(tick, name, watch);
  tick.drafts.push({
    name,
    health,
    counts: progress,
    codeVersion: record.codeVersion,
    generation: record.generation,
    backoff,
    ...(scaling.autoscaling ? { autoscaling: scaling.autoscaling } : {}),
    ...(record.rolledBack ? { rolledBack: record.rolledBack } : {}),
    ...(watch.rollout.failure !== undefined && watch.rollout.noRollback !== undefined ? { rolloutFailed: { failure: watch.rollout.failure, reason: watch.rollout.noRollback } } : {}),
    now,
  });
  out.memory.set(name, memoryOf(record, backoff, scaling));
}

function keepWatch(tick: Tick, name: string, watch: WatchResult): void {
  if (watch.changed) tick.out.rollouts.set(name, watch.rollout);
  tick.out.revisionWrites.push(...watch.writes);
  tick.out.events.push(...watch.events);
}

function applyStep(tick: Tick, step: RolloutStep): void {
  for (const a of step.drain) tick.upserts.set(a.id, a);
  for (const id of step.drop) {
    tick.out.remove.push(id);
    tick.dropped.add(id);
  }
  for (const a of step.start) {
    tick.kept.push(a);
    tick.unplaced.push(a);
    tick.upserts.set(a.id, a);
  }
}

function memoryOf(record: DeploymentRecord, backoff: Backoff, scaling: Scaling): ControllerRecord {
  const memory: ControllerRecord = { codeVersion: record.codeVersion, failures: backoff.failures, retryAt: backoff.retryAt, target: scaling.target };
  if (backoff.lastError !== undefined) memory.lastError = backoff.lastError;
  if (scaling.autoscaling) memory.autoscaling = scaling.autoscaling;
  return memory;
}

/** A status whose assignment is gone is left over (hosts only write statuses of assigned replicas). */
function leftoverStatuses(state: ObservedState): string[] {
  const out: string[] = [];
  for (const id of state.replicaStatus.keys()) if (!state.assignments.has(id)) out.push(id);
  return out;
}

/** Places the replicas that wait for a host, then writes every status with its pending reasons. */
function placeAndReport(tick: Tick): void {
  const gone = (a: ReplicaAssignment): boolean => tick.dropped.has(a.id);
  const current = (a: ReplicaAssignment): ReplicaAssignment => tick.upserts.get(a.id) ?? a;
  const kept = tick.dropped.size > 0 ? tick.kept.filter((a) => !gone(a)) : tick.kept;
  const placement = placeReplicas(tick.state.hosts, tick.unplaced.filter((a) => !gone(a)).map(current), kept);
  for (const a of placement.updates) tick.upserts.set(a.id, a);
  for (const a of drainStranded(tick.state.hosts, kept.map(current), placement.pending)) tick.upserts.set(a.id, a);
  tick.out.statuses = tick.drafts.map((d) => statusRecord(d, placement.pending.get(d.name) ?? []));
  tick.out.upsert = [...tick.upserts.values()];
}

function deadHosts(state: ObservedState): string[] {
  return state.hosts.filter((h) => !h.alive && state.now - (h.lastHeartbeatAt ?? 0) > DEAD_HOST_RETENTION_MS).map((h) => h.id);
}
