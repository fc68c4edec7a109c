/**
 * The leader's reads and writes around the rollout stage
 * (reconcile-revisions.ts): before a tick, the revisions of only the
 * deployments that need them, and only when they changed; after, each
 * revision write as its own guarded, fenced apply.
 */
import type { Redis } from "ioredis";
import type { RevisionSource } from "../client/revision-policy.js";
import type { Keys } from "../shared/keys.js";
import type { DeploymentRecord, RolloutRecord } from "../shared/records.js";
import { revisionWriteOps } from "./decision-ops.js";
import type { LeaderLease } from "./leader-lease.js";
import { revisionsToRead, type RevisionInputs, type RevisionWrite } from "./reconcile-revisions.js";

/** What a revision hash was read at: the record stamp it goes with, and the hash. */
interface CachedRevisions {
  stamp: string;
  hash: Record<string, string>;
}

/**
 * The leader's copy of the revisions of the deployments whose rollouts it
 * watches. A deployment's revisions are read again only when its record stamp
 * moved (every write that adds a revision, a deploy, a rollback or a delete,
 * stores a new stamp), after the leader wrote to them itself, and after
 * `clear` (the leader view's full reads). So a rolling update of every
 * deployment costs one read of each history, not one per tick.
 */
export class RevisionReader {
  private readonly cache = new Map<string, CachedRevisions>();

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
  ) {}

  /** Reads every history again at the next tick (a client that settled an outcome does not change the stamp). */
  clear(): void {
    this.cache.clear();
  }

  /** The leader wrote to these deployments' revisions (or tried to): read them again at the next tick. */
  forget(deployments: Iterable<string>): void {
    for (const name of deployments) this.cache.delete(name);
  }

  /**
   * The revisions of only the deployments that need them, given the rollout
   * records; read from Redis only for those whose stamp (`stampOf`, as the
   * leader view last read it) differs from the one the copy was read at.
   */
  async inputs(
    deployments: ReadonlyMap<string, DeploymentRecord>,
    rollouts: ReadonlyMap<string, RolloutRecord>,
    stampOf: (deployment: string) => string | undefined,
    source: RevisionSource,
  ): Promise<RevisionInputs> {
    const names = revisionsToRead(deployments, rollouts);
    const wanted = new Set(names);
    // Settled deployments need no copy: it is read again if they roll out again.
    for (const name of this.cache.keys()) if (!wanted.has(name)) this.cache.delete(name);
    const stale = names.filter((name) => {
      const cached = this.cache.get(name);
      return cached === undefined || cached.stamp !== stampOf(name);
    });
    const fresh = new Map<string, Record<string, string>>();
    if (stale.length > 0) {
      const pipeline = this.redis.pipeline();
      for (const name of stale) pipeline.hgetall(this.keys.revisions(name));
      const replies = (await pipeline.exec()) ?? [];
      stale.forEach((name, i) => {
        const [err, hash] = replies[i] ?? [new Error("no reply"), null];
        if (err) throw err;
        // Read after the stamp: a deploy in between leaves a newer hash under the older stamp, read again next tick.
        const stamp = stampOf(name);
        if (stamp !== undefined) this.cache.set(name, { stamp, hash: hash as Record<string, string> });
        else this.cache.delete(name);
        fresh.set(name, hash as Record<string, string>);
      });
    }
    const views = new Map<string, Readonly<Record<string, string>>>();
    for (const name of names) {
      const hash = fresh.get(name) ?? this.cache.get(name)?.hash;
      if (hash) views.set(name, hash);
    }
    return { views, source };
  }
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
