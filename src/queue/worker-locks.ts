/**
 * Releases the job locks of a replica that died, so its jobs are retried now
 * rather than after their locks expire.
 */
import type { Redis } from "ioredis";
import type { Keys } from "../shared/keys.js";
import { LuaScript } from "../shared/lua-script.js";
import { QueueKeys } from "./queue-keys.js";

/**
 * Lua: deletes the locks of active jobs whose token starts with the worker id.
 * KEYS[1] = the queue's `active` list; ARGV[1] = the job key prefix
 * (`<prefix>:<queue>:`, a lock is `<prefix>:<queue>:<id>:lock`), ARGV[2] = the
 * worker id. Returns the number of locks deleted.
 */
const RELEASE_LOCKS = new LuaScript(`
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
`);

/**
 * Deletes the locks of active jobs held by `workerId` (a dead replica's worker).
 * Any worker's stalled check (every second) then moves those jobs back to wait,
 * counting one stall against the job's maxRetries. Returns how many were released.
 */
export async function releaseWorkerLocks(redis: Redis, keys: Keys, deployment: string, workerId: string): Promise<number> {
  const queue = new QueueKeys(keys.namespace).of(deployment);
  return Number(await RELEASE_LOCKS.run(redis, [queue.active], [queue.jobPrefix, workerId]));
}
