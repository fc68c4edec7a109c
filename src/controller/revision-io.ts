/**
 * The leader's reads and writes around the rollout stage
 * (reconcile-revisions.ts): before a tick, its rollout records and the
 * revisions of only the deployments that need them; after, each revision
 * write as its own guarded, fenced apply.
 */
import type { Redis } from "ioredis";
import type { RevisionSource } from "../client/revision-policy.js";
import { parseJsonHash } from "../shared/json-hash.js";
import type { Keys } from "../shared/keys.js";
import type { DeploymentRecord, RolloutRecord } from "../shared/records.js";
import { revisionWriteOps } from "./decision-ops.js";
import type { LeaderLease } from "./leader-lease.js";
import { revisionsToRead, type RevisionInputs, type RevisionWrite } from "./reconcile-revisions.js";

export interface RolloutInputs {
  rollouts: ReadonlyMap<string, RolloutRecord>;
  revisions: RevisionInputs;
}

export async function readRolloutInputs(redis: Redis, keys: Keys, deployments: ReadonlyMap<string, DeploymentRecord>, source: RevisionSource): Promise<RolloutInputs> {
  const rollouts = parseJsonHash<RolloutRecord>(await redis.hgetall(keys.rollouts));
  return { rollouts, revisions: await readRevisionInputs(redis, keys, deployments, rollouts, source) };
}

/** The revisions of only the deployments that need them, given the rollout records (the leader keeps its own copy). */
export async function readRevisionInputs(
  redis: Redis,
  keys: Keys,
  deployments: ReadonlyMap<string, DeploymentRecord>,
  rollouts: ReadonlyMap<string, RolloutRecord>,
  source: RevisionSource,
): Promise<RevisionInputs> {
  const names = revisionsToRead(deployments, rollouts);
  const views = new Map<string, Record<string, string>>();
  if (names.length > 0) {
    const pipeline = redis.pipeline();
    for (const name of names) pipeline.hgetall(keys.revisions(name));
    const replies = (await pipeline.exec()) ?? [];
    names.forEach((name, i) => {
      const [err, hash] = replies[i] ?? [new Error("no reply"), null];
      if (err) throw err;
      views.set(name, hash as Record<string, string>);
    });
  }
  return { views, source };
}

/**
 * Applies the revision writes one by one. A write whose guard no longer holds
 * is skipped: what it read changed, and the next tick decides again.
 * Returns "not-leader" as soon as the lease is lost, "rolled back" when an
 * automatic rollback was written (its deployment record is new), else "done".
 */
export async function applyRevisionWrites(lease: LeaderLease, redis: Redis, keys: Keys, writes: readonly RevisionWrite[]): Promise<"done" | "rolled back" | "not-leader"> {
  let rolledBack = false;
  for (const w of writes) {
    const { guards, ops } = revisionWriteOps(w, keys);
    const result = await lease.fencedApplyIf(guards, ops);
    if (result === "not-leader") return "not-leader";
    if (result === "applied" && w.kind === "rollback") rolledBack = true;
  }
  if (rolledBack) await redis.publish(keys.changes, "deployments");
  return rolledBack ? "rolled back" : "done";
}
