/**
 * Reconcile stage 6: a deployment's health from its progress and back-off, and
 * the status record users read. The status message is written here and only
 * here, from the health, the counts and the pending replicas' reasons.
 */
import type { AutoRollbackNote, DeploymentStatusRecord, PendingReason } from "../shared/records.js";
import { describePending } from "../shared/resources.js";
import { rollbackMessage } from "./auto-rollback.js";
import type { Backoff } from "./reconcile-scaling.js";
import type { Progress } from "./reconcile-rollout.js";

export type Health =
  | { status: "HEALTHY" | "UPDATING" }
  | { status: "UNHEALTHY"; failures: number; lastError: string; retryInS: number }
  | { status: "DELETING"; draining: number };

/** What a deployment's status says, before the pending replicas are known (placement comes later in the tick). */
export interface StatusDraft {
  name: string;
  health: Health;
  counts: Pick<Progress, "target" | "running" | "updated">;
  codeVersion: string;
  generation: number;
  backoff: Backoff;
  autoscaling?: DeploymentStatusRecord["autoscaling"];
  /** The automatic rollback that wrote this generation. */
  rolledBack?: AutoRollbackNote;
  /** Why this generation's rollout failed and why it is not rolled back. */
  rolloutFailed?: { failure: string; reason: string };
  now: number;
}

export function healthOf(progress: Progress, backoff: Backoff, now: number): Health {
  const { updated, target, oldLeft } = progress;
  if (backoff.failures > 0 && updated < target) {
    const retryInS = Math.max(0, Math.ceil((backoff.retryAt - now) / 1000));
    return { status: "UNHEALTHY", failures: backoff.failures, lastError: backoff.lastError ?? "replica failed", retryInS };
  }
  return { status: updated === target && !oldLeft ? "HEALTHY" : "UPDATING" };
}

/** The status of a deleted deployment whose replicas still drain. */
export function deletingDraft(name: string, codeVersion: string, draining: number, running: number, now: number): StatusDraft {
  return { name, health: { status: "DELETING", draining }, counts: { target: 0, running, updated: 0 }, codeVersion, generation: 0, backoff: { failures: 0, retryAt: 0 }, now };
}

export function statusMessage(health: Health, counts: StatusDraft["counts"], pending: readonly PendingReason[]): string {
  const texts = uniqueTexts(pending);
  const suffix = pending.length > 0 ? `; ${pending.length} pending: ${texts.join("; ")}` : "";
  switch (health.status) {
    case "UNHEALTHY":
      return `${health.failures} failed start(s) of this version: ${health.lastError}; next attempt in ${health.retryInS} s${suffix}`;
    case "DELETING":
      return `draining ${health.draining} replica(s)${suffix}`;
    case "HEALTHY":
      return `${counts.updated}/${counts.target} replicas running${suffix}`;
    case "UPDATING":
      return `${counts.updated}/${counts.target} replicas running the current version${suffix}`;
  }
}

/** The record users read; `pending` holds one reason per pending replica of the deployment. */
export function statusRecord(draft: StatusDraft, pending: readonly PendingReason[]): DeploymentStatusRecord {
  const { backoff, counts } = draft;
  const status: DeploymentStatusRecord = {
    name: draft.name,
    status: draft.health.status,
    message: withRolloutNotes(statusMessage(draft.health, counts, pending), draft),
    targetReplicas: counts.target,
    runningReplicas: counts.running,
    updatedReplicas: counts.updated,
    codeVersion: draft.codeVersion,
    generation: draft.generation,
    failures: backoff.failures,
    retryAt: backoff.retryAt,
    updatedAt: draft.now,
  };
  if (backoff.lastError) status.lastError = backoff.lastError;
  if (pending.length > 0) status.pendingReasons = uniqueTexts(pending);
  if (draft.autoscaling) status.autoscaling = draft.autoscaling;
  if (draft.rolledBack) status.rolledBack = draft.rolledBack;
  if (draft.rolloutFailed) status.rolloutFailed = `${draft.rolloutFailed.failure}; not rolled back: ${draft.rolloutFailed.reason}`;
  return status;
}

/** The message with what an automatic rollback did first, or why a failed rollout was not rolled back last. */
function withRolloutNotes(message: string, draft: StatusDraft): string {
  const failed = draft.rolloutFailed ? `${message}; rollout failed, not rolled back: ${draft.rolloutFailed.reason}` : message;
  return draft.rolledBack ? `${rollbackMessage(draft.rolledBack)}; ${failed}` : failed;
}

function uniqueTexts(pending: readonly PendingReason[]): string[] {
  return [...new Set(pending.map(describePending))];
}
