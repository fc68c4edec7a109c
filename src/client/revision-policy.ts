/**
 * Revisions of a deployment, and the pure decisions about them: what outcome a
 * revision has reached given the deployment's status (level-triggered: any
 * reader of the status, the client waiting on a rollout or the controller, can
 * settle it), and which revision a rollback returns to.
 */
import { FlotillaError } from "../errors.js";
import type { DeploymentStatusRecord } from "../shared/records.js";
import type { DeploymentSpec } from "../spec/deployment-spec.js";
import { canonicalJson } from "./deployment-store.js";

export const REVISION_OUTCOMES = ["rolling out", "rolled out", "failed", "rolled back", "superseded"] as const;
/**
 * - `rolling out`: applied, not yet HEALTHY at its generation;
 * - `rolled out`: the deployment was HEALTHY at its generation;
 * - `failed`: UNHEALTHY at its generation (it may still become `rolled out` if its replicas recover);
 * - `rolled back`: a rollback replaced it;
 * - `superseded`: a newer revision was applied while it was still rolling out.
 */
export type RevisionOutcome = (typeof REVISION_OUTCOMES)[number];

/** Where a change came from: the client's host name and user (for the admin API: its caller's address). */
export interface RevisionSource {
  host: string;
  user: string;
}

/** A revision as applied: stored once, never changed. */
export interface RevisionBody {
  appliedAt: number;
  source: RevisionSource;
  /** The user-facing version: `spec.version`, or the code version without one. */
  version: string;
  codeVersion: string;
  configVersion: string;
  /** The deployment record's generation this revision wrote: the status record names it when it is done. */
  generation: number;
  /** The whole spec, so a rollback can apply it again. */
  spec: DeploymentSpec;
  /** The code package the revision ran (a spec with runtimeEnv), so a rollback runs the same code. */
  runtimeEnv?: { hash: string; bytes: number };
  /** Set on a rollback: the revision whose spec it applied again. */
  rollbackOf?: number;
}

/** The mutable part of a revision. */
export interface RevisionState {
  outcome: RevisionOutcome;
  /** When the outcome was last set (ms). */
  at: number;
  /** Why it failed (the deployment's last error). */
  error?: string;
  /** When it was seen rolled out; kept when it is rolled back later, so it stays a rollback target. */
  rolledOutAt?: number;
}

export interface Revision extends RevisionBody, RevisionState {
  revision: number;
}

export interface OutcomeChange {
  outcome: "rolled out" | "failed";
  error?: string;
}

/**
 * The outcome a revision has reached, given its deployment's status record, or
 * undefined when there is nothing to change. Only a revision rolling out (or
 * failed, which can recover) changes, and only on a status of its own generation.
 */
export function settledOutcome(
  status: Pick<DeploymentStatusRecord, "generation" | "status" | "message" | "lastError"> | undefined,
  revision: Pick<Revision, "generation" | "outcome">,
): OutcomeChange | undefined {
  if (!status || status.generation !== revision.generation) return undefined;
  if (status.status === "HEALTHY" && (revision.outcome === "rolling out" || revision.outcome === "failed")) return { outcome: "rolled out" };
  if (status.status === "UNHEALTHY" && revision.outcome === "rolling out") return { outcome: "failed", error: status.lastError ?? status.message };
  return undefined;
}

/** Outcomes a revision may leave for `change` (anything else was decided for good: superseded, rolled back). */
export function outcomesBefore(change: OutcomeChange["outcome"]): RevisionOutcome[] {
  return change === "rolled out" ? ["rolling out", "failed"] : ["rolling out"];
}

function keptRange(revisions: readonly Revision[]): string {
  if (revisions.length === 0) return "none kept";
  return `kept: ${revisions[0]?.revision}-${revisions[revisions.length - 1]?.revision}`;
}

/**
 * The revision a rollback applies. With `to`, that revision (it must be kept and differ from what is
 * deployed now). Without, the newest revision before the current one that rolled out and whose spec
 * differs from the deployed one. `revisions` are in ascending order; `deployed` is the current spec.
 */
export function chooseRollbackTarget(name: string, revisions: readonly Revision[], deployed: DeploymentSpec, to?: number): Revision {
  const current = canonicalJson(deployed);
  if (to !== undefined) {
    const target = revisions.find((r) => r.revision === to);
    if (!target) throw new FlotillaError("NOT_FOUND", `deployment '${name}' has no revision ${to} (${keptRange(revisions)})`);
    if (canonicalJson(target.spec) === current) {
      throw new FlotillaError("NO_ROLLBACK_TARGET", `revision ${to} of '${name}' has the spec that is deployed now: nothing to roll back`);
    }
    return target;
  }
  const latest = revisions[revisions.length - 1];
  if (!latest) throw new FlotillaError("NO_ROLLBACK_TARGET", `deployment '${name}' has no revisions recorded: nothing to roll back to`);
  for (let i = revisions.length - 2; i >= 0; i--) {
    const r = revisions[i] as Revision;
    if (r.rolledOutAt !== undefined && canonicalJson(r.spec) !== current) return r;
  }
  throw new FlotillaError(
    "NO_ROLLBACK_TARGET",
    `no revision of '${name}' before the current one (${latest.revision}) rolled out with another spec: nothing to roll back to (${keptRange(revisions)})`,
  );
}
