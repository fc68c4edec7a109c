/**
 * Lean versions of BullMQ's take and finish scripts for the request path.
 * They keep what makes a job durable and recoverable exactly as BullMQ's
 * scripts do it (the active list, the lock key and its token, the stalled
 * set), and leave out what nobody reads for Flotilla's own jobs: the event
 * stream entries, the metrics, the checks for parents, deduplication and
 * rate limits. Whoever calls them decides when that holds; anything unusual
 * in Redis makes the take answer "nothing", and BullMQ's own fetch follows.
 */
import { LuaScript } from "../shared/lua-script.js";

/**
 * Takes the next waiting job, as BullMQ's moveToActive does in the common
 * case: moved from the wait list to the active list, locked with the
 * worker's token, processedOn and attemptsStarted set, and the base marker
 * put back only when more jobs wait (BullMQ's puts it back always, which
 * wakes the next wait for nothing); otherwise the marker of the next
 * delayed job, if any, so the worker's next wait learns when it is due. It takes nothing, and leaves everything
 * to BullMQ's fetch, when the queue is paused, has a global concurrency or
 * rate limit, has a delayed job due (BullMQ's fetch promotes it) or has
 * nothing in the wait list (BullMQ's fetch looks at prioritized jobs and
 * the next delayed one).
 * KEYS[1] wait, KEYS[2] active, KEYS[3] prioritized, KEYS[4] delayed,
 * KEYS[5] meta, KEYS[6] marker; ARGV[1] job key prefix, ARGV[2] timestamp
 * (ms; 0 for Redis's clock, for a take sent before the job it takes
 * arrives), ARGV[3] lock token, ARGV[4] lock duration (ms), ARGV[5] worker
 * name ("" for none). Returns BullMQ's raw moveToActive answer: {job fields,
 * job id, 0, 0}, or {0, 0, 0, 0} when it took nothing.
 */
export const LEAN_TAKE = new LuaScript(`
local none = {0, 0, 0, 0}
local meta = redis.call("HMGET", KEYS[5], "paused", "concurrency", "max")
if meta[1] or meta[2] or meta[3] then return none end
local now = tonumber(ARGV[2])
if now == 0 then
  local t = redis.call("TIME")
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local delayed = tonumber(redis.call("ZRANGE", KEYS[4], 0, 0, "WITHSCORES")[2])
if delayed and delayed < (now + 1) * 0x1000 then return none end
local id = redis.call("RPOPLPUSH", KEYS[1], KEYS[2])
if id and string.sub(id, 1, 2) == "0:" then
  redis.call("LREM", KEYS[2], 1, id)
  id = redis.call("RPOPLPUSH", KEYS[1], KEYS[2])
end
if not id then return none end
if redis.call("LLEN", KEYS[1]) > 0 or redis.call("ZCARD", KEYS[3]) > 0 then
  redis.call("ZADD", KEYS[6], 0, "0")
elseif delayed then
  redis.call("ZADD", KEYS[6], delayed / 0x1000, "1")
end
local jobKey = ARGV[1] .. id
local fields = redis.call("HGETALL", jobKey)
if #fields == 0 then
  redis.call("LREM", KEYS[2], -1, id)
  return none
end
redis.call("SET", jobKey .. ":lock", ARGV[3], "PX", ARGV[4])
local ats = 1
for i = 1, #fields, 2 do
  if fields[i] == "ats" then ats = (tonumber(fields[i + 1]) or 0) + 1 end
end
local set = {"processedOn", tostring(now), "ats", tostring(ats)}
if ARGV[5] ~= "" then
  set[5] = "pb"
  set[6] = ARGV[5]
end
redis.call("HSET", jobKey, unpack(set))
for _, v in ipairs(set) do fields[#fields + 1] = v end
return {fields, id, 0, 0}
`);

/**
 * Lua: the body of the lean finish of one job (see LEAN_FINISH), as a local
 * function, shared by LEAN_FINISH and LEAN_FINISH_MANY.
 */
const FINISH_ONE = `
local function finishOne(active, stalled, jobKey, id, token)
  local lockKey = jobKey .. ":lock"
  local lock = redis.call("GET", lockKey)
  if lock ~= token then
    if lock then return -6 end
    return -2
  end
  if redis.call("LREM", active, -1, id) < 1 then
    redis.call("DEL", lockKey)
    redis.call("SREM", stalled, id)
    return -3
  end
  redis.call("SREM", stalled, id)
  redis.call("DEL", lockKey, jobKey, jobKey .. ":logs", jobKey .. ":dependencies", jobKey .. ":processed", jobKey .. ":failed", jobKey .. ":unsuccessful")
  return 0
end
`;

/**
 * Completes a job that is removed on completion, as BullMQ's moveToFinished
 * does for one without parent or deduplication: the lock must be the
 * worker's (then it and the job's stalled mark go), the job leaves the
 * active list, and its keys are deleted. With a reply list, the replies are
 * pushed first, in the same script: the answer is in Redis whenever the job
 * is gone, and a job whose lock was lost (it will run again) still answers.
 * KEYS[1] active, KEYS[2] stalled, KEYS[3] the job's key, KEYS[4] (optional)
 * reply list; ARGV[1] job id, ARGV[2] lock token, ARGV[3] reply list TTL
 * (ms), ARGV[4..] replies. Returns 0, or BullMQ's codes: -2 lock missing,
 * -6 lock held by another token, -3 job not active.
 */
export const LEAN_FINISH = new LuaScript(`${FINISH_ONE}
if KEYS[4] and #ARGV > 3 then
  redis.call("RPUSH", KEYS[4], unpack(ARGV, 4))
  redis.call("PEXPIRE", KEYS[4], ARGV[3])
end
return finishOne(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])
`);

/**
 * LEAN_FINISH of several jobs without replies, in one script: a replica's
 * finishes held back (see leanFinish's `queuedAhead`), one script call in
 * place of one each.
 * KEYS[1] active, KEYS[2] stalled, KEYS[3..] the jobs' keys; ARGV each
 * job's id and lock token, in the keys' order. Returns each job's code, as
 * LEAN_FINISH's.
 */
export const LEAN_FINISH_MANY = new LuaScript(`${FINISH_ONE}
local codes = {}
for i = 3, #KEYS do
  codes[i - 2] = finishOne(KEYS[1], KEYS[2], KEYS[i], ARGV[2 * i - 5], ARGV[2 * i - 4])
end
return codes
`);

/** The lean add's source, with `opts` the Lua expression for the options as stored (JSON). */
const leanAddSource = (opts: string): string => `
local opts = ${opts}
local ids = {}
for i = 5, #ARGV do
  local id = redis.call("INCR", KEYS[1]) .. ""
  redis.call("HMSET", ARGV[1] .. id, "name", ARGV[2], "data", ARGV[i], "opts", opts, "timestamp", ARGV[4], "delay", 0, "priority", 0)
  redis.call("LPUSH", KEYS[2], id)
  ids[#ids + 1] = id
end
local meta = redis.call("HMGET", KEYS[3], "paused", "concurrency")
if not meta[1] and not (meta[2] and redis.call("LLEN", KEYS[4]) >= tonumber(meta[2])) then
  redis.call("ZADD", KEYS[5], 0, "0")
end
return ids
`;

/**
 * Adds jobs of one name and one set of options, stored as BullMQ's
 * addStandardJob stores them (the same hash fields, the options JSON-encoded
 * in Redis from the same msgpack bytes), pushed to the wait list in order,
 * with one base marker unless the queue is paused or at its global
 * concurrency. Left out: the 'added' and 'waiting' event stream entries.
 * KEYS[1] id counter, KEYS[2] wait, KEYS[3] meta, KEYS[4] active,
 * KEYS[5] marker; ARGV[1] job key prefix, ARGV[2] name, ARGV[3] options
 * (msgpack, as BullMQ sends them), ARGV[4] timestamp, ARGV[5..] each job's
 * data (JSON). Returns the new job ids, in order.
 */
export const LEAN_ADD = new LuaScript(leanAddSource("cjson.encode(cmsgpack.unpack(ARGV[3]))"));

/**
 * LEAN_ADD with ARGV[3] the options as Redis stores them (OPTIONS_AS_STORED
 * of the msgpack bytes): no decoding per add, and a request's command is all
 * text, which the client sends without copying it into a buffer.
 */
export const LEAN_ADD_STORED = new LuaScript(leanAddSource("ARGV[3]"));

/** The stored (JSON) form of msgpack-packed job options, exactly as LEAN_ADD and BullMQ's add store them. ARGV[1] the options. */
export const OPTIONS_AS_STORED = new LuaScript("return cjson.encode(cmsgpack.unpack(ARGV[1]))");

/**
 * A request handed straight to a replica that offered a slot (see
 * direct-jobs.ts): LEAN_ADD_STORED's add of one job and, when nothing would
 * be taken before it (nothing waiting or prioritized, no delayed job due)
 * and the queue is not paused or limited, LEAN_TAKE's take of it for the
 * replica's token, in one script: the job goes straight to the active list,
 * locked, with processedOn and attemptsStarted set, and no marker wakes a
 * wait for it. Otherwise the job is only added, as LEAN_ADD_STORED adds it,
 * for the queue's waits to take. The timestamp is the requester's clock,
 * for the job's creation and its start.
 * KEYS[1] id counter, KEYS[2] wait, KEYS[3] meta, KEYS[4] active,
 * KEYS[5] marker, KEYS[6] prioritized, KEYS[7] delayed; ARGV[1] job key
 * prefix, ARGV[2] name, ARGV[3] options (as stored), ARGV[4] timestamp (ms),
 * ARGV[5] data (JSON), ARGV[6] lock token, ARGV[7] lock duration (ms).
 * Returns {id, 1} when the job was taken for the token, {id, 0} when it
 * waits in the queue.
 */
export const ADD_TAKE = new LuaScript(`
local meta = redis.call("HMGET", KEYS[3], "paused", "concurrency", "max")
local id = redis.call("INCR", KEYS[1]) .. ""
local jobKey = ARGV[1] .. id
local take = not (meta[1] or meta[2] or meta[3])
-- Empty lists and sorted sets do not exist: one look in the usual case, where nothing waits and nothing is delayed.
if take and redis.call("EXISTS", KEYS[2], KEYS[6], KEYS[7]) > 0 then
  take = redis.call("LLEN", KEYS[2]) == 0 and redis.call("ZCARD", KEYS[6]) == 0
  if take then
    local delayed = tonumber(redis.call("ZRANGE", KEYS[7], 0, 0, "WITHSCORES")[2])
    if delayed and delayed < (tonumber(ARGV[4]) + 1) * 0x1000 then take = false end
  end
end
if take then
  redis.call("HMSET", jobKey, "name", ARGV[2], "data", ARGV[5], "opts", ARGV[3], "timestamp", ARGV[4], "delay", "0", "priority", "0", "processedOn", ARGV[4], "ats", "1")
  redis.call("LPUSH", KEYS[4], id)
  redis.call("SET", jobKey .. ":lock", ARGV[6], "PX", ARGV[7])
  return {id, 1}
end
redis.call("HMSET", jobKey, "name", ARGV[2], "data", ARGV[5], "opts", ARGV[3], "timestamp", ARGV[4], "delay", "0", "priority", "0")
redis.call("LPUSH", KEYS[2], id)
if not meta[1] and not (meta[2] and redis.call("LLEN", KEYS[4]) >= tonumber(meta[2])) then
  redis.call("ZADD", KEYS[5], 0, "0")
end
return {id, 0}
`);

/**
 * Gives back a job taken for a token whose holder will not run it (a
 * replica that had closed, a requester whose connection to the replica
 * broke before the job was written to it): when the lock is still the
 * token's, the lock goes, the job leaves the active list and becomes the
 * next to be taken, its start uncounted, and a marker wakes a wait unless
 * the queue is paused.
 * KEYS[1] active, KEYS[2] wait, KEYS[3] marker, KEYS[4] meta, KEYS[5] the
 * job's key; ARGV[1] job id, ARGV[2] lock token. Returns 1 when given back,
 * 0 when the lock was not the token's or the job not active.
 */
export const GIVE_BACK = new LuaScript(`
local lockKey = KEYS[5] .. ":lock"
if redis.call("GET", lockKey) ~= ARGV[2] then return 0 end
redis.call("DEL", lockKey)
if redis.call("LREM", KEYS[1], -1, ARGV[1]) < 1 then return 0 end
redis.call("RPUSH", KEYS[2], ARGV[1])
redis.call("HINCRBY", KEYS[5], "ats", -1)
redis.call("HDEL", KEYS[5], "processedOn")
if not redis.call("HGET", KEYS[4], "paused") then
  redis.call("ZADD", KEYS[3], 0, "0")
end
return 1
`);
