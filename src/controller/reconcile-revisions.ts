/**
 * Reconcile stage 5: watches each deployment's latest rollout. It remembers
 * (in a RolloutRecord) since when the current generation rolls out and how it
 * went; settles its revision's outcome when the health settles (`rolled out`
 * when HEALTHY, `failed` when UNHEALTHY), and, with rollbackOnFailure, judges
 * when the rollout failed and rolls it back (auto-rollback.ts).
 *
 * The revisions are read only for the deployments that may need them, named
 * by `revisionsToRead` from the rollout records. Every write is a
 * compare-and-set on what was read.
 */
import { settledOutcome, type OutcomeChange, type RevisionSource, type RevisionState } from "../client/revision-policy.js";
import { parseRevisions } from "../client/revisions.js";
import type { DeploymentRecord, RolloutRecord } from "../shared/records.js";
import { sameJson } from "../shared/same-json.js";
import { rolloutPolicyOf } from "../spec/deployment-spec.js";
import { planAutoRollback, rolloutFailure, type AutoRollbackWrite } from "./auto-rollback.js";
import type { Backoff } from "./reconcile-scaling.js";
import type { Health } from "./reconcile-status.js";
import type { Progress } from "./reconcile-rollout.js";
import type { ReconcileEvent } from "./reconcile-types.js";

export interface RevisionInputs {
  /** The revisions hash of each deployment named by revisionsToRead, as stored ({} when there is none). */
  views: ReadonlyMap<string, Readonly<Record<string, string>>>;
  /** Who an automatic rollback is recorded as coming from (the leader controller). */
  source: RevisionSource;
}

/** A revision's outcome to change, only if its state is still the one read. */
export interface OutcomeWrite {
  kind: "outcome";
  deployment: string;
  revision: number;
  /** The revision's state JSON as read. */
  from: string;
  state: RevisionState;
}

export type RevisionWrite = OutcomeWrite | AutoRollbackWrite;

function needsSettling(r: RolloutRecord): boolean {
  return (r.health === "HEALTHY" || r.health === "UNHEALTHY") && r.settled !== r.health;
}

function needsRollback(r: RolloutRecord): boolean {
  return r.failure !== undefined && r.noRollback === undefined && r.done === undefined;
}

/**
 * The deployments whose revisions a tick needs: those rolling out (a new
 * generation, or one not yet HEALTHY), and those with an outcome still to
 * settle or a failed rollout to roll back. A rolled out, settled deployment
 * costs no read.
 */
export function revisionsToRead(deployments: ReadonlyMap<string, DeploymentRecord>, rollouts: ReadonlyMap<string, RolloutRecord>): string[] {
  const names: string[] = [];
  for (const [name, record] of deployments) {
    const r = rollouts.get(name);
    if (r?.generation !== record.generation || r.done === undefined || needsSettling(r) || needsRollback(r)) names.push(name);
  }
  return names;
}

export interface WatchInput {
  record: DeploymentRecord;
  /** The rollout record as the last tick left it. */
  previous: RolloutRecord | undefined;
  health: Health["status"];
  backoff: Backoff;
  progress: Pick<Progress, "updated" | "target">;
  /** Replicas of the current version their hosts are replacing now. */
  replacing: readonly string[];
  revisions: RevisionInputs | undefined;
  now: number;
}

export interface WatchResult {
  rollout: RolloutRecord;
  /** Whether the rollout record changed (only then is it written). */
  changed: boolean;
  writes: RevisionWrite[];
  events: ReconcileEvent[];
}

export function watchRollout(input: WatchInput): WatchResult {
  const { record, now } = input;
  const prev = input.previous?.generation === record.generation ? input.previous : undefined;
  const next: RolloutRecord = { ...(prev ?? { generation: record.generation, since: now }), health: input.health };
  if (input.health === "HEALTHY") next.done = true;
  const result: WatchResult = { rollout: next, changed: false, writes: [], events: [] };
  if (next.done === undefined) judge(next, input, result);
  const hash = input.revisions?.views.get(record.spec.name);
  if (hash) actOnRevisions(next, hash, input, result);
  result.changed = !sameJson(next, input.previous);
  return result;
}

/** Counts the new version's replacements and, with rollbackOnFailure, decides once whether the rollout failed. */
function judge(next: RolloutRecord, input: WatchInput, result: WatchResult): void {
  const policy = rolloutPolicyOf(input.record.spec);
  if (!policy.rollbackOnFailure || next.failure !== undefined) return;
  const replaced = [...new Set([...(next.replaced ?? []), ...input.replacing])].slice(0, policy.rolloutFailureThreshold);
  if (replaced.length > 0) next.replaced = replaced;
  const failure = rolloutFailure({
    record: input.record,
    failedStarts: input.backoff.failures,
    lastError: input.backoff.lastError,
    replaced: replaced.length,
    updated: input.progress.updated,
    target: input.progress.target,
    elapsedMs: input.now - next.since,
  });
  if (failure === undefined) return;
  next.failure = failure;
  result.events.push({ deployment: input.record.spec.name, level: "warn", message: `rollout of generation ${input.record.generation} failed: ${failure}` });
}

/** With the revisions read: rolls back a failed rollout, or settles the revision's outcome from the health. */
function actOnRevisions(next: RolloutRecord, hash: Readonly<Record<string, string>>, input: WatchInput, result: WatchResult): void {
  const { record, now } = input;
  const name = record.spec.name;
  let forced: OutcomeChange | undefined;
  if (needsRollback(next) && next.failure !== undefined) {
    const plan = planAutoRollback(record, hash, next.failure, now, input.revisions?.source ?? { host: "unknown", user: "controller" });
    if ("write" in plan) {
      result.writes.push(plan.write);
      result.events.push({ deployment: name, level: "warn", message: `rolling back to revision ${plan.write.record.rolledBack?.to}: ${next.failure}` });
      return;
    }
    next.noRollback = plan.none;
    result.events.push({ deployment: name, level: "warn", message: `rollout failed (${next.failure}); not rolled back: ${plan.none}` });
    forced = { outcome: "failed", error: next.failure };
  }
  const settling = needsSettling(next);
  if (!settling && !forced) return;
  if (settling) next.settled = next.health;
  const write = outcomeWrite(record, next, hash, forced, input.backoff.lastError ?? "replica failed", now);
  if (write) result.writes.push(write);
}

/** The change to the latest revision's outcome, if it is of this generation and has one to make. */
function outcomeWrite(record: DeploymentRecord, rollout: RolloutRecord, hash: Readonly<Record<string, string>>, forced: OutcomeChange | undefined, error: string, now: number): OutcomeWrite | undefined {
  const latest = parseRevisions({ ...hash }).at(-1);
  if (!latest || latest.generation !== record.generation) return undefined;
  const change = forced && latest.outcome === "rolling out" ? forced : settledOutcome({ generation: record.generation, status: rollout.health, message: error, lastError: error }, latest);
  if (!change) return undefined;
  const from = hash[`o:${latest.revision}`] as string;
  const state: RevisionState = change.outcome === "rolled out" ? { outcome: "rolled out", at: now, rolledOutAt: now } : { outcome: "failed", at: now, error: (change.error ?? error).slice(0, 2000) };
  return { kind: "outcome", deployment: record.spec.name, revision: latest.revision, from, state };
}
