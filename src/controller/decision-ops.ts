/**
 * The Redis writes that carry out one tick's decisions, as data: the leader
 * applies them in one fenced script (leader-lease.ts), the reconcile
 * simulation applies them to its in-memory copy of the same hashes.
 */
import type { Keys } from "../shared/keys.js";
import type { RedisOp } from "./leader-lease.js";
import type { Decisions } from "./reconcile-types.js";

/**
 * Fields per HSET or HDEL: the fenced script runs each op with Lua's unpack,
 * which takes at most about 8,000 values (a cold start of 10,000 replicas is
 * one HSET of 20,000 otherwise).
 */
export const FIELDS_PER_OP = 1000;

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** HSET of each entry as JSON, when there is any. */
export function hsetJson(key: string, entries: Iterable<readonly [string, unknown]>): RedisOp[] {
  return chunks([...entries], FIELDS_PER_OP).map((part): RedisOp => ["HSET", key, ...part.flatMap(([field, value]) => [field, JSON.stringify(value)])]);
}

export function hdel(key: string, fields: readonly string[]): RedisOp[] {
  return chunks(fields, FIELDS_PER_OP).map((part): RedisOp => ["HDEL", key, ...part]);
}

export function decisionOps(d: Decisions, keys: Keys): RedisOp[] {
  return [
    ...hsetJson(keys.replicas, d.upsert.map((a) => [a.id, a] as const)),
    ...hdel(keys.replicas, d.remove),
    ...hdel(keys.replicaStatus, d.remove),
    ...hsetJson(keys.deploymentStatus, d.statuses.map((s) => [s.name, s] as const)),
    ...hsetJson(keys.controllerRecords, d.memory),
    ...hsetJson(keys.autoscaler, d.autoscaler),
    ...hdel(keys.deploymentStatus, d.forget),
    ...hdel(keys.controllerRecords, d.forget),
    ...hdel(keys.autoscaler, d.forget),
    ...hdel(keys.hosts, d.forgetHosts),
  ];
}
