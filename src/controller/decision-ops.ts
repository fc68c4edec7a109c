/**
 * The Redis writes that carry out one tick's decisions, as data: the leader
 * applies them in one fenced script (leader-lease.ts), the reconcile
 * simulation applies them to its in-memory copy of the same hashes.
 */
import type { Keys } from "../shared/keys.js";
import type { RedisOp } from "./leader-lease.js";
import type { Decisions } from "./reconcile-types.js";

/** HSET of each entry as JSON, when there is any. */
function hsetJson(key: string, entries: Iterable<readonly [string, unknown]>): RedisOp[] {
  const args = [...entries].flatMap(([field, value]) => [field, JSON.stringify(value)]);
  return args.length > 0 ? [["HSET", key, ...args]] : [];
}

function hdel(key: string, fields: readonly string[]): RedisOp[] {
  return fields.length > 0 ? [["HDEL", key, ...fields]] : [];
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
