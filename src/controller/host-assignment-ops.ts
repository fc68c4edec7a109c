/**
 * The writes that keep each host's own copy of its assignments in step with a
 * tick's decisions, as data (like decision-ops.ts): the host's assignment
 * hash, and its generation, bumped in the same fenced write so that a host
 * that checks its generation never misses a change. Also names the hosts to
 * nudge once the write is done.
 */
import type { Keys } from "../shared/keys.js";
import type { ReplicaAssignment } from "../shared/records.js";
import { hdel, hsetJson } from "./decision-ops.js";
import type { RedisOp } from "./leader-lease.js";
import type { Decisions } from "./reconcile-types.js";

export interface HostAssignmentWrites {
  ops: RedisOp[];
  /** Hosts whose assignments changed: their generation is bumped, and they are told. */
  hosts: string[];
}

/**
 * @param previous the assignments as they stand before the write (a replica
 *   leaving a host is deleted from that host's hash)
 */
export function hostAssignmentOps(d: Pick<Decisions, "upsert" | "remove" | "forgetHosts">, previous: ReadonlyMap<string, ReplicaAssignment>, keys: Keys): HostAssignmentWrites {
  const sets = new Map<string, Array<[string, ReplicaAssignment]>>();
  const dels = new Map<string, string[]>();
  const push = <T>(map: Map<string, T[]>, host: string, item: T): void => {
    const list = map.get(host);
    if (list) list.push(item);
    else map.set(host, [item]);
  };
  for (const a of d.upsert) {
    const before = previous.get(a.id)?.host ?? null;
    if (before !== null && before !== a.host) push(dels, before, a.id);
    if (a.host !== null) push(sets, a.host, [a.id, a]);
  }
  for (const id of d.remove) {
    const before = previous.get(id)?.host ?? null;
    if (before !== null) push(dels, before, id);
  }
  const forgotten = new Set(d.forgetHosts);
  const hosts = [...new Set([...sets.keys(), ...dels.keys()])].filter((h) => !forgotten.has(h));
  const ops: RedisOp[] = [];
  for (const [host, entries] of sets) if (!forgotten.has(host)) ops.push(...hsetJson(keys.hostAssignments(host), entries));
  for (const [host, ids] of dels) if (!forgotten.has(host)) ops.push(...hdel(keys.hostAssignments(host), ids));
  for (const host of hosts) ops.push(["HINCRBY", keys.hostGenerations, host, "1"]);
  for (const host of forgotten) ops.push(["DEL", keys.hostAssignments(host)], ["HDEL", keys.hostGenerations, host]);
  return { ops, hosts };
}
