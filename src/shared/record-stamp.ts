import { randomUUID } from "node:crypto";
import type { DeploymentRecord } from "./records.js";

/**
 * What readers compare to see that a record changed (deployment-generations):
 * unique per write, also after a deployment is deleted and created again.
 * Every write of a deployment record stores a new one beside it and bumps the
 * deployments' version, or hosts, routers and the leader miss the change until
 * their next full read.
 */
export function recordStamp(record: DeploymentRecord): string {
  return `${record.generation}-${randomUUID().slice(0, 8)}`;
}
