/**
 * The controller leader lease: one key holding the leader's id with a TTL.
 * The leader renews it every tick; a standby takes it once it expires. Every
 * change the leader writes goes through `fencedApply`, which checks the lease
 * in the same Lua script, so a deposed leader can never write.
 */
import type { Redis } from "ioredis";
import { LuaScript } from "../shared/lua-script.js";

/**
 * KEYS[1] lease; ARGV[1] my id; ARGV[2] ttl ms.
 * Returns 1 if I hold the lease now (acquired or renewed); if another does,
 * minus the ms its lease has left (-1 at least).
 */
const ACQUIRE = new LuaScript(`
local holder = redis.call("GET", KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
  return 1
end
return -math.max(1, redis.call("PTTL", KEYS[1]))
`);

/** KEYS[1] lease; ARGV[1] my id. Deletes the lease only if I hold it. */
const RELEASE = new LuaScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0
`);

/**
 * KEYS[1] lease, KEYS[2..n] every key the ops and guards touch; ARGV[1] my id,
 * ARGV[2] the ops as JSON `[[command, key, args...], ...]`, ARGV[3] (optional)
 * guards as JSON `[[key, field, value], ...]`. Runs the ops only while I hold
 * the lease and every guarded hash field holds its value. Returns 1 when
 * applied, 0 when not the leader, 2 when a guard did not hold.
 */
const FENCED_APPLY = new LuaScript(`
if redis.call("GET", KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[3] then
  for _, guard in ipairs(cjson.decode(ARGV[3])) do
    if redis.call("HGET", guard[1], guard[2]) ~= guard[3] then
      return 2
    end
  end
end
local ops = cjson.decode(ARGV[2])
for _, op in ipairs(ops) do
  redis.call(unpack(op))
end
return 1
`);

export type RedisOp = [command: string, key: string, ...args: string[]];

/** A condition for a fenced write: the hash field at `key` holds exactly `value`. */
export type RedisGuard = [key: string, field: string, value: string];

/** What a guarded fenced apply did: wrote, or not because another holds the lease, or not because a guard failed. */
export type GuardedApply = "applied" | "not-leader" | "stale";

export class LeaderLease {
  constructor(
    private readonly redis: Redis,
    private readonly key: string,
    readonly holderId: string,
    private readonly ttlMs: number,
  ) {}

  /** After a tryAcquire that found another holder: how long (ms) its lease had left then. */
  heldByOtherForMs: number | undefined;

  /** Acquires or renews; true while this process is the leader. */
  async tryAcquire(): Promise<boolean> {
    const result = Number(await ACQUIRE.run(this.redis, [this.key], [this.holderId, String(this.ttlMs)]));
    this.heldByOtherForMs = result < 0 ? -result : undefined;
    return result === 1;
  }

  async release(): Promise<void> {
    await RELEASE.run(this.redis, [this.key], [this.holderId]);
  }

  async holder(): Promise<string | null> {
    return this.redis.get(this.key);
  }

  /** Applies ops atomically if this process still holds the lease. */
  async fencedApply(ops: readonly RedisOp[]): Promise<boolean> {
    if (ops.length === 0) return true;
    const keys = [this.key, ...new Set(ops.map((op) => op[1]))];
    return Number(await FENCED_APPLY.run(this.redis, keys, [this.holderId, JSON.stringify(ops)])) === 1;
  }

  /**
   * Applies ops atomically if this process still holds the lease and every
   * guard holds (a compare-and-set: nothing was changed since it was read).
   */
  async fencedApplyIf(guards: readonly RedisGuard[], ops: readonly RedisOp[]): Promise<GuardedApply> {
    const keys = [this.key, ...new Set([...ops.map((op) => op[1]), ...guards.map((g) => g[0])])];
    const result = Number(await FENCED_APPLY.run(this.redis, keys, [this.holderId, JSON.stringify(ops), JSON.stringify(guards)]));
    return result === 1 ? "applied" : result === 2 ? "stale" : "not-leader";
  }
}
