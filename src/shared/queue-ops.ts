/**
 * Operations on a deployment's BullMQ queue that are not a worker's or a
 * requester's: counting demand, and releasing the job locks of a replica that
 * died so its jobs are retried now rather than after the lock expires.
 */
import type { Redis } from "ioredis";
import type { Keys } from "./keys.js";
import { deleteStale, requestersKey, sumRequested } from "./requester-demand.js";

/**
 * Deletes the locks of active jobs held by `workerId` (a dead replica's worker).
 * Any worker's stalled check (every second) then moves those jobs back to wait,
 * counting one stall against the job's maxRetries. Returns how many were released.
 *
 * Lua: KEYS[1] = the queue's `active` list; ARGV[1] = the lock key prefix
 * (`<prefix>:<queue>:`), ARGV[2] = the worker id. Returns the number of locks deleted.
 */
const RELEASE_LOCKS = `
local ids = redis.call("LRANGE", KEYS[1], 0, -1)
local released = 0
local owner = ARGV[2] .. ":"
for _, id in ipairs(ids) do
  local lockKey = ARGV[1] .. id .. ":lock"
  local token = redis.call("GET", lockKey)
  if token and string.sub(token, 1, string.len(owner)) == owner then
    redis.call("DEL", lockKey)
    released = released + 1
  end
end
return released
`;

export async function releaseWorkerLocks(redis: Redis, keys: Keys, deployment: string, workerId: string): Promise<number> {
  const lockPrefix = keys.queueKey(deployment, "");
  const released = await redis.eval(RELEASE_LOCKS, 1, keys.queueKey(deployment, "active"), lockPrefix, workerId);
  return Number(released);
}

export interface QueueDepth {
  waiting: number;
  active: number;
  /** Jobs that failed outside a handler (their replica crashed more than maxRetries times): still to be answered. */
  failed: number;
  /**
   * Requests that requesters (routers, handles) wait on: in the queue, in a replica, one job each or in
   * batch jobs. Counts requests, where `waiting` and `active` count jobs. @default 0
   */
  requested?: number;
}

/**
 * Waiting (incl. prioritized and delayed-to-wait) and active counts of several deployments, and the requests
 * their requesters wait on, in one round trip.
 */
export async function queueDepths(redis: Redis, keys: Keys, deployments: readonly string[]): Promise<Map<string, QueueDepth>> {
  const out = new Map<string, QueueDepth>();
  // One pipeline per deployment (its keys share a hash tag, so this also works on a Redis Cluster), all sent at once.
  const results = await Promise.all(
    deployments.map((name) =>
      redis
        .pipeline()
        .llen(keys.queueKey(name, "wait"))
        .zcard(keys.queueKey(name, "prioritized"))
        .llen(keys.queueKey(name, "active"))
        .zcard(keys.queueKey(name, "failed"))
        .hgetall(requestersKey(keys, name))
        .time()
        .exec(),
    ),
  );
  deployments.forEach((name, i) => {
    const num = (j: number): number => Number(results[i]?.[j]?.[1] ?? 0);
    const time = results[i]?.[5]?.[1] as Array<string | number> | undefined;
    const { requested, stale } = sumRequested(results[i]?.[4]?.[1] as Record<string, string> | undefined, Number(time?.[0] ?? 0));
    // A dead requester's count: nobody refreshes it any more.
    if (stale.length > 0 && time) deleteStale(redis, keys, name, stale).catch(() => undefined);
    out.set(name, { waiting: num(0) + num(1), active: num(2), failed: num(3), requested });
  });
  return out;
}
