/**
 * Writes the statuses of a host's replicas for the controller: only those
 * that changed since this host last wrote them (and all of them now and then,
 * as a safety net), each marked in replica-status-changed so that the leader
 * reads only what changed.
 */
import type { Redis } from "ioredis";
import type { Keys } from "../shared/keys.js";
import { LuaScript } from "../shared/lua-script.js";
import type { ReplicaStatus } from "../shared/records.js";

/** Every status is written again after this long even if it did not change. */
export const STATUS_REWRITE_MS = 60_000;

/**
 * KEYS[1] the host's assignment hash, KEYS[2] the replica-status hash, KEYS[3]
 * the replica-status-changed set; ARGV: id1, json1, id2, json2, ... Sets each
 * status whose assignment exists (once the controller has removed both, a late
 * write cannot bring the status back) and adds its id to the changed set.
 * Returns the ids written.
 */
const WRITE_ASSIGNED_STATUSES = new LuaScript(`
local written = {}
for i = 1, #ARGV, 2 do
  if redis.call("HEXISTS", KEYS[1], ARGV[i]) == 1 then
    redis.call("HSET", KEYS[2], ARGV[i], ARGV[i + 1])
    written[#written + 1] = ARGV[i]
  end
end
for i = 1, #written, 1000 do
  redis.call("SADD", KEYS[3], unpack(written, i, math.min(i + 999, #written)))
end
return written
`);

/** A status as compared between writes: the time it was written left out. */
function comparable(status: ReplicaStatus): string {
  return JSON.stringify({ ...status, updatedAt: 0 });
}

export class StatusWriter {
  /** What was last written of each replica (its comparable form). */
  private written = new Map<string, string>();
  private rewriteAt = -Infinity;

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly hostId: string,
  ) {}

  /** Writes the statuses that changed; returns how many were written. */
  async write(statuses: readonly ReplicaStatus[], now: number): Promise<number> {
    if (now - this.rewriteAt > STATUS_REWRITE_MS) {
      this.written.clear();
      this.rewriteAt = now;
    }
    const current = new Set(statuses.map((s) => s.id));
    for (const id of this.written.keys()) if (!current.has(id)) this.written.delete(id);
    const pending = statuses.map((s) => ({ status: s, key: comparable(s) })).filter((p) => this.written.get(p.status.id) !== p.key);
    if (pending.length === 0) return 0;
    const args = pending.flatMap((p) => [p.status.id, JSON.stringify(p.status)]);
    const keys = [this.keys.hostAssignments(this.hostId), this.keys.replicaStatus, this.keys.replicaStatusChanged];
    const ids = new Set((await WRITE_ASSIGNED_STATUSES.run(this.redis, keys, args)) as string[]);
    for (const p of pending) if (ids.has(p.status.id)) this.written.set(p.status.id, p.key);
    return ids.size;
  }
}
