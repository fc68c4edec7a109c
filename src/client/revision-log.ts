/**
 * The revision log of each deployment in Redis (one hash per deployment, see
 * `Keys.revisions`): appending a revision inside the transaction that writes
 * the deployment record, and changing a revision's outcome. Numbers are given
 * by Redis, so concurrent clients never give one number twice.
 */
import os from "node:os";
import type { ChainableCommander, Redis } from "ioredis";
import { FlotillaError } from "../errors.js";
import type { Keys } from "../shared/keys.js";
import type { DeploymentRecord } from "../shared/records.js";
import type { OutcomeChange, RevisionBody, RevisionOutcome, RevisionSource, RevisionState } from "./revision-policy.js";

/** Revisions kept per deployment unless FLOTILLA_REVISION_HISTORY or the caller says otherwise. */
export const DEFAULT_REVISION_HISTORY = 10;

/** How many revisions to keep per deployment: FLOTILLA_REVISION_HISTORY (1-1000), else 10. */
export function revisionHistoryLimit(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.FLOTILLA_REVISION_HISTORY;
  if (raw === undefined || raw === "") return DEFAULT_REVISION_HISTORY;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 1000) {
    throw new FlotillaError("INVALID_REQUEST", `FLOTILLA_REVISION_HISTORY must be an integer from 1 to 1000, got '${raw}'`);
  }
  return n;
}

/** The host name and user of this process, for a revision's source; "unknown" where the OS will not say. */
export function localSource(): RevisionSource {
  let user = "";
  try {
    user = os.userInfo().username;
  } catch {
    // no passwd entry for this uid (e.g. a container's arbitrary uid)
  }
  let host = "";
  try {
    host = os.hostname();
  } catch {
    host = "";
  }
  return { host: host || "unknown", user: user || process.env.USER || process.env.LOGNAME || "unknown" };
}

/**
 * Lua: KEYS[1] = the deployment's revisions hash; ARGV[1] = the revision body JSON; ARGV[2] = revisions to
 * keep; ARGV[3] = now (ms); ARGV[4] = "1" when this is a rollback. Gives the next number; the previous
 * revision becomes `superseded` if it was still rolling out, or `rolled back` (whatever it was) on a
 * rollback; drops revisions beyond the limit. Returns the new number.
 */
const APPEND = `
local n = redis.call('HINCRBY', KEYS[1], 'next', 1)
local now = tonumber(ARGV[3])
local prev = redis.call('HGET', KEYS[1], 'o:' .. (n - 1))
if prev then
  local state = cjson.decode(prev)
  if ARGV[4] == '1' then
    state.outcome = 'rolled back'
    state.at = now
    redis.call('HSET', KEYS[1], 'o:' .. (n - 1), cjson.encode(state))
  elseif state.outcome == 'rolling out' then
    redis.call('HSET', KEYS[1], 'o:' .. (n - 1), cjson.encode({ outcome = 'superseded', at = now }))
  end
end
redis.call('HSET', KEYS[1], 'r:' .. n, ARGV[1], 'o:' .. n, cjson.encode({ outcome = 'rolling out', at = now }))
local oldest = n - tonumber(ARGV[2])
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  local num = tonumber(string.match(field, '^[ro]:(%d+)$'))
  if num and num <= oldest then redis.call('HDEL', KEYS[1], field) end
end
return n
`;

/**
 * Lua: KEYS[1] = the deployment's revisions hash; ARGV[1] = revision number; ARGV[2] = the new state JSON;
 * ARGV[3..] = the outcomes it may change from. Returns 1 when it changed the outcome, 0 otherwise.
 */
const MARK = `
local field = 'o:' .. ARGV[1]
local raw = redis.call('HGET', KEYS[1], field)
if not raw then return 0 end
local outcome = cjson.decode(raw).outcome
for i = 3, #ARGV do
  if ARGV[i] == outcome then
    redis.call('HSET', KEYS[1], field, ARGV[2])
    return 1
  end
end
return 0
`;

export interface RevisionOptions {
  /** Where the change comes from. @default this process's host name and user */
  source?: RevisionSource;
  /** Revisions to keep per deployment. @default revisionHistoryLimit() */
  keep?: number;
  /** Deployment name → the revision whose spec this apply brings back (a rollback). */
  rollbackOf?: Readonly<Record<string, number>>;
}

/**
 * Queues one revision per record on the transaction (after the record's own
 * write). Returns a function that reads the numbers given out of the
 * transaction's replies: deployment name → revision.
 */
export function queueRevisions(tx: ChainableCommander, keys: Keys, records: readonly DeploymentRecord[], now: number, options: RevisionOptions = {}): (replies: Array<[Error | null, unknown]> | null) => Map<string, number> {
  const source = options.source ?? localSource();
  const keep = options.keep ?? revisionHistoryLimit();
  const at = Math.round(now);
  for (const record of records) {
    const rollbackOf = options.rollbackOf?.[record.spec.name];
    const body: RevisionBody = {
      appliedAt: at,
      source,
      version: record.spec.version ?? record.codeVersion,
      codeVersion: record.codeVersion,
      configVersion: record.configVersion,
      generation: record.generation,
      spec: record.spec,
      ...(record.runtimeEnv ? { runtimeEnv: record.runtimeEnv } : {}),
      ...(rollbackOf !== undefined ? { rollbackOf } : {}),
    };
    tx.eval(APPEND, 1, keys.revisions(record.spec.name), JSON.stringify(body), String(keep), String(at), rollbackOf !== undefined ? "1" : "0");
  }
  return (replies) => {
    const numbers = new Map<string, number>();
    // The revisions' replies follow the record write (index 0), in the order queued.
    records.forEach((record, i) => {
      const [err, value] = replies?.[i + 1] ?? [new Error("no reply"), null];
      if (err) throw new FlotillaError("INTERNAL", `deployment '${record.spec.name}' was applied, but its revision was not recorded: ${err.message}`);
      numbers.set(record.spec.name, Number(value));
    });
    return numbers;
  };
}

/** Sets a revision's outcome if it is still one of `from`; true when it changed. */
export async function markOutcome(redis: Redis, keys: Keys, name: string, revision: number, state: RevisionState, from: readonly RevisionOutcome[]): Promise<boolean> {
  const changed = await redis.eval(MARK, 1, keys.revisions(name), String(revision), JSON.stringify(state), ...from);
  return Number(changed) === 1;
}

/** The revision rolled out (the deployment was HEALTHY at its generation). */
export function markRolledOut(redis: Redis, keys: Keys, name: string, revision: number, now = Date.now()): Promise<boolean> {
  return markOutcome(redis, keys, name, revision, { outcome: "rolled out", at: now, rolledOutAt: now }, ["rolling out", "failed"]);
}

/** The revision failed (UNHEALTHY at its generation, or the controller gave up on it), with the error. */
export function markFailed(redis: Redis, keys: Keys, name: string, revision: number, error: string, now = Date.now()): Promise<boolean> {
  return markOutcome(redis, keys, name, revision, { outcome: "failed", at: now, error: error.slice(0, 2000) }, ["rolling out"]);
}

/** Applies a settled outcome (see settledOutcome) to a revision. */
export function applyOutcome(redis: Redis, keys: Keys, name: string, revision: number, change: OutcomeChange, now = Date.now()): Promise<boolean> {
  return change.outcome === "rolled out" ? markRolledOut(redis, keys, name, revision, now) : markFailed(redis, keys, name, revision, change.error ?? "failed", now);
}
