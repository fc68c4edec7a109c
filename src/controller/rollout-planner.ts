/**
 * The scaling and rolling-update planner for one deployment: a pure function
 * from the target and the observed replicas to how many replicas of the
 * target version to start and which replicas to drain. No I/O, no clock.
 *
 * A rolling update surges: it starts new replicas before draining old ones,
 * keeps at most `target + maxUnavailable(target)` replicas that are not
 * draining, and never drains a serving replica if fewer than
 * `minServing(target)` would be left serving. So a failing new version leaves
 * the old replicas serving, and a single replica is replaced only after its
 * successor serves.
 */

/**
 * Where a replica is in its life, as the planner sees it.
 * - `pending`: no host yet.
 * - `starting`: the process is launching and takes no requests yet.
 * - `serving`: running or reconfiguring; takes requests.
 * - `draining`: finishing in-flight work, then going away.
 */
export type ReplicaPhase = "pending" | "starting" | "serving" | "draining";

/** One replica of the deployment (failed and stopped ones are left out by the caller). */
export interface PlannerReplica {
  id: string;
  codeVersion: string;
  phase: ReplicaPhase;
  /** Requests it is running now. */
  inflight: number;
  createdAt: number;
  /** It must go even at the target version (its host is draining): replaced like an old version, successor first. */
  mustMove?: boolean;
}

/** What the planner decides from: the desired state and the replicas observed. */
export interface RolloutInput {
  /** Desired number of replicas (>= 0). */
  target: number;
  /** The code version every replica should run. */
  codeVersion: string;
  replicas: readonly PlannerReplica[];
  /** False during failure back-off: no replica of `codeVersion` is started. */
  canStart: boolean;
}

/** What to do now: start replicas of the target version and drain replicas by id. */
export interface RolloutDecision {
  /** Replicas of the target version to start. */
  start: number;
  /** Replicas to drain, in the order they were chosen; never one already draining. */
  drain: string[];
  /** True while a replica of another code version (or one that must move) is still not draining. */
  rollingUpdate: boolean;
}

const PHASE_RANK: Record<ReplicaPhase, number> = { pending: 0, starting: 1, serving: 2, draining: 3 };

/** Cheapest to drain first: pending, starting, then fewest inflight; ties newest first, then by id. */
function drainOrder(a: PlannerReplica, b: PlannerReplica): number {
  return (
    PHASE_RANK[a.phase] - PHASE_RANK[b.phase] ||
    a.inflight - b.inflight ||
    b.createdAt - a.createdAt ||
    (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)
  );
}

const isServing = (r: PlannerReplica): boolean => r.phase === "serving";

/** True for a replica a rolling update replaces: another version, or one that must move. */
export function isOutdated(r: PlannerReplica, codeVersion: string): boolean {
  return r.codeVersion !== codeVersion || r.mustMove === true;
}
const ids = (rs: readonly PlannerReplica[]): string[] => rs.map((r) => r.id);

/** Replicas a rolling update may have unavailable, and may surge by: max(1, floor(20% of target)). */
export function maxUnavailable(target: number): number {
  return Math.max(1, Math.floor(0.2 * target));
}

/** Fewest replicas that must stay serving while replicas are replaced: 0 for target 0, else at least 1. */
export function minServing(target: number): number {
  return target <= 0 ? 0 : Math.max(1, target - maxUnavailable(target));
}

/** Decides one step of scaling or rolling update; the same input always gives the same decision. */
export function planRollout(input: RolloutInput): RolloutDecision {
  const { target, codeVersion, canStart } = input;
  // The common case, checked without sorting: no other version and no more replicas than wanted.
  let notDraining = 0;
  let other = 0;
  for (const r of input.replicas) {
    if (r.phase === "draining") continue;
    notDraining++;
    if (isOutdated(r, codeVersion)) other++;
  }
  if (other === 0 && notDraining <= target) return { start: canStart ? target - notDraining : 0, drain: [], rollingUpdate: false };
  // Sorting everything once makes every later choice (and the output) independent of input order.
  const live = input.replicas.filter((r) => r.phase !== "draining").sort(drainOrder);
  const old = live.filter((r) => isOutdated(r, codeVersion));
  const fresh = live.filter((r) => !isOutdated(r, codeVersion));
  const rollingUpdate = old.length > 0;

  if (target <= 0) return { start: 0, drain: ids(live), rollingUpdate };

  // More new replicas than wanted (a scale-down): drain the cheapest extras, keep the rest.
  const excess = fresh.slice(0, Math.max(0, fresh.length - target));
  const kept = fresh.length - excess.length;
  if (!rollingUpdate) return { start: canStart ? target - kept : 0, drain: ids(excess), rollingUpdate };

  const surge = maxUnavailable(target);
  const oldIdle = old.filter((r) => !isServing(r)); // serve nothing: drain at once
  const oldServing = old.filter(isServing); // already cheapest first
  let total = live.length - excess.length - oldIdle.length;
  const start = canStart ? Math.max(0, Math.min(target - kept, target + surge - total)) : 0;
  total += start;
  // Counting this step's starts in `total` lets old replicas go once replacements are asked for,
  // and once new replicas alone reach target, `total - target` covers every old one. The
  // serving floor still holds old replicas until their replacements actually serve.
  const serving = live.filter(isServing).length - excess.filter(isServing).length;
  // Surge first: old replicas make way only as their replacements serve, so a rollout (and a
  // failing one above all) never lowers capacity. Only when replacements cannot be placed
  // (still pending) does the maxUnavailable budget drain old ones to make room for them.
  const blocked = canStart && fresh.some((r) => r.phase === "pending");
  const floor = blocked ? minServing(target) : target;
  const drainServing = Math.max(0, Math.min(oldServing.length, serving - floor, total - target));
  return { start, drain: [...ids(oldIdle), ...ids(excess), ...ids(oldServing.slice(0, drainServing))], rollingUpdate };
}
