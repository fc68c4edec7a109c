/**
 * A tick's decisions without the writes that would store what Redis already
 * holds: reconcile decides the status and memory of every deployment on every
 * tick, and at fleet size rewriting them all twice a second is most of the
 * leader's traffic. Pure: the leader keeps what it last wrote (leader-view.ts).
 */
import type { AutoscalerState } from "../autoscaler/policy.js";
import type { ControllerRecord, DeploymentStatusRecord, ReplicaAssignment } from "../shared/records.js";
import { sameJson } from "../shared/same-json.js";
import type { Decisions } from "./reconcile-types.js";

/** What Redis holds of the leader's writes, as far as the leader knows. */
export interface Written {
  assignments: ReadonlyMap<string, ReplicaAssignment>;
  statuses: ReadonlyMap<string, DeploymentStatusRecord>;
  memory: ReadonlyMap<string, ControllerRecord>;
  autoscaler: ReadonlyMap<string, AutoscalerState>;
}

const same = (a: unknown, b: unknown): boolean => a !== undefined && sameJson(a, b);

/** Statuses compare without their time: one that says the same is not written again. */
const sameStatus = (a: DeploymentStatusRecord | undefined, b: DeploymentStatusRecord): boolean => a !== undefined && sameJson(a, b, "updatedAt");

function changedEntries<T>(decided: ReadonlyMap<string, T>, written: ReadonlyMap<string, T>): Map<string, T> {
  const out = new Map<string, T>();
  for (const [name, value] of decided) if (!same(written.get(name), value)) out.set(name, value);
  return out;
}

/**
 * A status that says the same is still written again once it is this old: its
 * `updatedAt` tells users (and tests) that a leader is at work. At most
 * STATUS_REFRESHES_PER_TICK of them per tick, the oldest first, so that with
 * thousands of deployments the refresh is spread over ticks.
 */
export const STATUS_REFRESH_MS = 1000;
export const STATUS_REFRESHES_PER_TICK = 500;

/** A new leader's statuses go out as they come due for a refresh: the last leader's are already old. */
export function unwrittenDecisions(d: Decisions, written: Written): Decisions {
  return {
    ...d,
    upsert: d.upsert.filter((a) => !same(written.assignments.get(a.id), a)),
    statuses: statusesToWrite(d.statuses, written.statuses),
    memory: changedEntries(d.memory, written.memory),
    autoscaler: changedEntries(d.autoscaler, written.autoscaler),
  };
}

/** The statuses that changed, then the oldest of those that did not, as many as a tick refreshes. */
function statusesToWrite(decided: readonly DeploymentStatusRecord[], written: ReadonlyMap<string, DeploymentStatusRecord>): DeploymentStatusRecord[] {
  const changed: DeploymentStatusRecord[] = [];
  const stale: Array<{ status: DeploymentStatusRecord; writtenAt: number }> = [];
  for (const s of decided) {
    const before = written.get(s.name);
    if (!sameStatus(before, s)) changed.push(s);
    else if (before && s.updatedAt - before.updatedAt >= STATUS_REFRESH_MS) stale.push({ status: s, writtenAt: before.updatedAt });
  }
  stale.sort((a, b) => a.writtenAt - b.writtenAt);
  return [...changed, ...stale.slice(0, STATUS_REFRESHES_PER_TICK).map((x) => x.status)];
}
