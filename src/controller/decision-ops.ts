/**
 * The Redis writes that carry out one tick's decisions, as data: the leader
 * applies them in one fenced script (leader-lease.ts), the reconcile
 * simulation applies them to its in-memory copy of the same hashes.
 */
import type { Keys } from "../shared/keys.js";
import { recordStamp } from "../shared/record-stamp.js";
import type { RedisGuard, RedisOp } from "./leader-lease.js";
import type { RevisionWrite } from "./reconcile-revisions.js";
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
    ...hsetJson(keys.rollouts, [...d.rollouts].filter(([, r]) => r !== null)),
    ...hdel(keys.deploymentStatus, d.forget),
    ...hdel(keys.controllerRecords, d.forget),
    ...hdel(keys.autoscaler, d.forget),
    ...hdel(keys.rollouts, [...d.rollouts].filter(([, r]) => r === null).map(([name]) => name)),
    ...hdel(keys.hosts, d.forgetHosts),
  ];
}

/**
 * One revision write as a guarded fenced apply: an outcome changes only if
 * the revision's state is still the one read; an automatic rollback writes
 * the deployment record and its revisions together, only if no revision was
 * added since they were read (no deploy, rollback or delete came between).
 */
export function revisionWriteOps(w: RevisionWrite, keys: Keys): { guards: RedisGuard[]; ops: RedisOp[] } {
  const key = keys.revisions(w.deployment);
  if (w.kind === "outcome") {
    return { guards: [[key, `o:${w.revision}`, w.from]], ops: [["HSET", key, `o:${w.revision}`, JSON.stringify(w.state)]] };
  }
  const n = w.next + 1;
  return {
    guards: [[key, "next", String(w.next)]],
    ops: [
      ["HSET", keys.deployments, w.deployment, JSON.stringify(w.record)],
      ["HSET", key, "next", String(n), `r:${n}`, JSON.stringify(w.revision), `o:${n}`, JSON.stringify(w.state), `o:${w.failed.revision}`, JSON.stringify(w.failed.state)],
      ...hdel(key, w.drop),
      // Like every record write: a new stamp and the deployments' version, so hosts, routers and the leader see it.
      ["HSET", keys.deploymentGenerations, w.deployment, recordStamp(w.record)],
      ["INCR", keys.deploymentsVersion],
    ],
  };
}
