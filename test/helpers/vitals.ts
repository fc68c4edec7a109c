import type { ReplicaVitals } from "../../src/host/host-plan.js";

/** What a host knows of a replica whose health checks, pings and memory call for nothing, with `change` applied. */
export function quietVitals(change: Partial<ReplicaVitals> = {}): ReplicaVitals {
  return {
    health: { lastCheckAt: null, consecutiveFailures: 0 },
    pingSentAt: null,
    rssMiB: [],
    healthCheckFailureThreshold: 3,
    healthCheckTimeoutS: 30,
    memoryMiB: null,
    replacement: null,
    ...change,
  };
}
