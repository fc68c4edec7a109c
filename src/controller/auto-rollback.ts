/**
 * Automatic rollback as pure decisions: when a rollout counts as failed under
 * the spec's policy (rollbackOnFailure, rolloutFailureThreshold,
 * rolloutTimeoutS), and what the leader writes to return the deployment to the
 * last revision that rolled out. The stage that calls these is
 * reconcile-revisions.ts; the write is carried out fenced (revision-io.ts).
 */
import { canonicalJson } from "../client/deployment-store.js";
import { DEFAULT_REVISION_HISTORY } from "../client/revision-log.js";
import type { Revision, RevisionBody, RevisionSource, RevisionState } from "../client/revision-policy.js";
import { parseRevisions } from "../client/revisions.js";
import { errorMessage } from "../errors.js";
import type { DeploymentRecord } from "../shared/records.js";
import { parseDeploymentSpec, rolloutPolicyOf } from "../spec/deployment-spec.js";

export interface FailureInput {
  record: DeploymentRecord;
  /** Consecutive failed starts of the new version (constructor, module load, first health check). */
  failedStarts: number;
  lastError: string | undefined;
  /** Replicas of the new version replaced (health, liveness, memory) during the rollout. */
  replaced: number;
  /** Replicas of the new version serving, and how many are wanted. */
  updated: number;
  target: number;
  /** How long the rollout has run (ms). */
  elapsedMs: number;
}

/**
 * Why a rollout that is not yet done counts as failed, or undefined while it
 * may still finish: its new replicas failed `rolloutFailureThreshold` times,
 * or it has run `rolloutTimeoutS`. Only for specs with rollbackOnFailure.
 */
export function rolloutFailure(input: FailureInput): string | undefined {
  const policy = rolloutPolicyOf(input.record.spec);
  if (!policy.rollbackOnFailure) return undefined;
  const attempts = input.failedStarts + input.replaced;
  if (attempts >= policy.rolloutFailureThreshold && input.updated < input.target) {
    const what = input.replaced === 0 ? `${input.failedStarts} failed start(s)` : `${input.failedStarts} failed start(s) and ${input.replaced} replacement(s)`;
    return `${what} of its replicas: ${input.lastError ?? "replica failed"}`;
  }
  if (input.elapsedMs >= policy.rolloutTimeoutS * 1000) {
    const last = input.lastError !== undefined ? `; last error: ${input.lastError}` : "";
    return `not rolled out within ${policy.rolloutTimeoutS} s (${input.updated}/${input.target} replicas running it)${last}`;
  }
  return undefined;
}

/** The writes of an automatic rollback, as data (decision-ops.ts turns them into guarded Redis ops). */
export interface AutoRollbackWrite {
  kind: "rollback";
  deployment: string;
  /** The revisions hash's `next` as read: the write happens only if no revision was added since. */
  next: number;
  record: DeploymentRecord;
  /** The new revision (number next + 1) and its first state. */
  revision: RevisionBody;
  state: RevisionState;
  /** The failed revision (number next) and its final state. */
  failed: { revision: number; state: RevisionState };
  /** Revision fields dropped to keep the history at its length. */
  drop: string[];
}

export type RollbackPlan = { write: AutoRollbackWrite } | { none: string };

/** True when returning to `r` changes something: another code version, spec or package than `current`. */
function differs(r: Revision, current: Revision): boolean {
  return r.codeVersion !== current.codeVersion || canonicalJson(r.spec) !== canonicalJson(current.spec) || r.runtimeEnv?.hash !== current.runtimeEnv?.hash;
}

/** The newest revision before `failed` that rolled out and differs from it. */
export function autoRollbackTarget(revisions: readonly Revision[], failed: Revision): Revision | undefined {
  for (let i = revisions.length - 1; i >= 0; i--) {
    const r = revisions[i] as Revision;
    if (r.revision < failed.revision && r.rolledOutAt !== undefined && differs(r, failed)) return r;
  }
  return undefined;
}

/** Fields of revisions numbered at or below `oldest`. */
function fieldsUpTo(hash: Readonly<Record<string, string>>, oldest: number): string[] {
  return Object.keys(hash).filter((field) => {
    const m = /^[ro]:(\d+)$/.exec(field);
    return m !== null && Number(m[1]) <= oldest;
  });
}

/**
 * What returns a deployment whose rollout failed to the last revision that
 * rolled out: the record again with that revision's spec, code version and
 * package (a new generation, noting what failed), a new revision naming its
 * source, and the failed revision marked `failed`. None when the revisions do
 * not describe the current generation, when the failed revision is itself a
 * rollback (no chains of rollbacks), or when nothing earlier rolled out.
 */
export function planAutoRollback(record: DeploymentRecord, hash: Readonly<Record<string, string>>, failure: string, now: number, source: RevisionSource): RollbackPlan {
  const revisions = parseRevisions({ ...hash });
  const failed = revisions[revisions.length - 1];
  const next = Number(hash.next);
  if (!failed || failed.generation !== record.generation || failed.revision !== next) return { none: "its revision is not recorded" };
  if (failed.rollbackOf !== undefined) return { none: `revision ${failed.revision} is itself a rollback (of revision ${failed.rollbackOf})` };
  const target = autoRollbackTarget(revisions, failed);
  if (!target) return { none: `no revision before ${failed.revision} rolled out` };
  let spec;
  try {
    spec = parseDeploymentSpec(target.spec, `revision ${target.revision}`);
  } catch (err) {
    return { none: `revision ${target.revision} no longer parses: ${errorMessage(err)}` };
  }
  const generation = record.generation + 1;
  const at = Math.round(now);
  const runtimeEnv = target.runtimeEnv ? { runtimeEnv: target.runtimeEnv } : {};
  const note = { failedRevision: failed.revision, failedGeneration: record.generation, to: target.revision, error: failure.slice(0, 2000), at };
  const newRecord: DeploymentRecord = { spec, codeVersion: target.codeVersion, configVersion: target.configVersion, generation, deployedAt: at, ...runtimeEnv, rolledBack: note };
  const revision: RevisionBody = {
    appliedAt: at,
    source,
    version: target.version,
    codeVersion: target.codeVersion,
    configVersion: target.configVersion,
    generation,
    spec,
    ...runtimeEnv,
    rollbackOf: target.revision,
  };
  // Never fewer revisions than clients keep, never more than it holds now (at least the default).
  const keep = Math.max(revisions.length, DEFAULT_REVISION_HISTORY);
  return {
    write: {
      kind: "rollback",
      deployment: record.spec.name,
      next,
      record: newRecord,
      revision,
      state: { outcome: "rolling out", at },
      failed: { revision: failed.revision, state: { outcome: "failed", at, error: note.error } },
      drop: fieldsUpTo(hash, next + 1 - keep),
    },
  };
}

/** The status line of a deployment an automatic rollback returned. */
export function rollbackMessage(note: { failedRevision: number; to: number; error: string }): string {
  return `rolled back to revision ${note.to}: revision ${note.failedRevision} failed: ${note.error}`;
}
