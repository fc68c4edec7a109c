/**
 * The placer: decides which host each new replica goes to and which GPU
 * devices it gets, from host capacities and the replicas already placed. Pure
 * and deterministic: no I/O, the same input gives the same decisions.
 */
import type { PendingReason, ResourceSet } from "../shared/records.js";
import { Ledger, needOf, sameResources, slotsOf, type HostCapacity, type Need, type PlacedReplica, type PlacementRequest } from "../shared/resource-ledger.js";

export type { HostCapacity, PlacedReplica, PlacementRequest };

export interface PlacementResult {
  /** In request order; gpuIds ascending. */
  placed: Array<{ id: string; host: string; gpuIds: number[] }>;
  /** In request order, with a reason a person can act on (`describePending` gives its text). */
  pending: Array<{ id: string; reason: PendingReason }>;
}

/** Places requests in the given order, never over-committing any resource or GPU device. */
export function place(hosts: readonly HostCapacity[], existing: readonly PlacedReplica[], requests: readonly PlacementRequest[]): PlacementResult {
  const slots = slotsOf(hosts, existing, requests);
  const ledger = new Ledger(hosts, existing, slots, new Set(requests.map((r) => r.deployment)));
  // Capacity only shrinks during a call, so a need that fit nowhere keeps failing: remember why.
  const failed = new Map<string, PendingReason>();
  const result: PlacementResult = { placed: [], pending: [] };
  // Replicas of one deployment usually ask for the same resources: parse each need once.
  const needs = new Map<string, { resources: ResourceSet; need: Need }>();
  for (const request of requests) {
    let cached = needs.get(request.deployment);
    if (!cached || !sameResources(cached.resources, request.resources)) {
      cached = { resources: request.resources, need: needOf(request.resources, slots) };
      needs.set(request.deployment, cached);
    }
    const need = cached.need;
    const counts = ledger.countsOf(request.deployment);
    const h = failed.has(need.key) ? -1 : ledger.choose(need, counts);
    if (h < 0) {
      const reason = failed.get(need.key) ?? ledger.whyNot(need);
      failed.set(need.key, reason);
      result.pending.push({ id: request.id, reason });
    }
    else result.placed.push({ id: request.id, host: ledger.hosts[h]!.host.id, gpuIds: ledger.take(h, need, counts) });
  }
  return result;
}
