/**
 * Reconcile stage 5: finds hosts for the replicas that wait for one, records
 * why the others keep waiting, and drains the replicas of a draining host
 * whose successors cannot be placed anywhere.
 */
import type { PendingReason, ReplicaAssignment } from "../shared/records.js";
import { samePending } from "../shared/resources.js";
import { place, type HostCapacity, type PlacedReplica, type PlacementRequest } from "./placement.js";
import type { ObservedHost } from "./reconcile-types.js";

export interface PlacementStep {
  /** Assignments that change: placed ones, and pending ones whose reason changed. */
  updates: ReplicaAssignment[];
  /** Per deployment, the reason of each of its replicas that stays pending. */
  pending: Map<string, PendingReason[]>;
}

const hasHost = (a: ReplicaAssignment): a is ReplicaAssignment & { host: string } => a.host !== null;

/**
 * @param candidates replicas without a host, as decided so far (only those meant to run are placed)
 * @param kept every replica that stays, as read: nothing decided before placement moves a replica
 *   or changes what it holds (a drain keeps its host), so these say what each host holds
 */
export function placeReplicas(hosts: readonly ObservedHost[], candidates: readonly ReplicaAssignment[], kept: readonly ReplicaAssignment[]): PlacementStep {
  const step: PlacementStep = { updates: [], pending: new Map() };
  const requests: Array<PlacementRequest & { assignment: ReplicaAssignment }> = candidates
    .filter((a) => a.host === null && a.desired === "run")
    .map((a) => ({ id: a.id, deployment: a.deployment, resources: a.resources, assignment: a }));
  if (requests.length === 0) return step;
  const capacity: HostCapacity[] = hosts.filter((h) => h.alive).map((h) => ({ id: h.id, total: h.resources, gpuDevices: h.gpuDevices, schedulable: !h.draining }));
  const existing: PlacedReplica[] = kept.filter(hasHost);
  requests.sort((x, y) => x.assignment.createdAt - y.assignment.createdAt);
  const result = place(capacity, existing, requests);
  // Placed and pending are each in request order and hold every request between them: walk all three together.
  let placedAt = 0;
  let pendingAt = 0;
  for (const { id, assignment: a } of requests) {
    const placed = result.placed[placedAt];
    if (placed?.id === id) {
      placedAt++;
      const next: ReplicaAssignment = { ...a, host: placed.host, gpuIds: placed.gpuIds };
      delete next.pendingReason;
      step.updates.push(next);
      continue;
    }
    const pending = result.pending[pendingAt++];
    if (pending?.id !== id) throw new Error(`placement left replica ${id} out of its answer`);
    if (!samePending(a.pendingReason, pending.reason)) step.updates.push({ ...a, pendingReason: pending.reason });
    const list = step.pending.get(a.deployment);
    if (list) list.push(pending.reason);
    else step.pending.set(a.deployment, [pending.reason]);
  }
  return step;
}

/**
 * A draining host's replicas wait for successors elsewhere; where a successor cannot be placed,
 * waiting helps nobody (the host is going away), so as many of them as wait for a host drain now.
 * @param current every replica that stays, as decided so far
 */
export function drainStranded(hosts: readonly ObservedHost[], current: readonly ReplicaAssignment[], pending: ReadonlyMap<string, readonly PendingReason[]>): ReplicaAssignment[] {
  const drainingHosts = new Set(hosts.filter((h) => h.alive && h.draining).map((h) => h.id));
  if (drainingHosts.size === 0 || pending.size === 0) return [];
  const left = new Map([...pending].map(([name, list]) => [name, list.length]));
  const drains: ReplicaAssignment[] = [];
  for (const a of current) {
    const n = left.get(a.deployment) ?? 0;
    if (n > 0 && a.host !== null && drainingHosts.has(a.host) && a.desired === "run") {
      drains.push({ ...a, desired: "drain" });
      left.set(a.deployment, n - 1);
    }
  }
  return drains;
}
