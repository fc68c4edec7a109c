import type { Redis } from "ioredis";
import type { Keys } from "../../src/shared/keys.js";
import type { DeploymentStatusRecord } from "../../src/shared/records.js";

/** Writes a deployment's status as the leader would, for tests of what reads it (rollout waits, revision outcomes). */
export async function writeStatus(
  redis: Redis,
  keys: Keys,
  name: string,
  generation: number,
  status: DeploymentStatusRecord["status"],
  extra: Partial<DeploymentStatusRecord> = {},
): Promise<void> {
  const record: DeploymentStatusRecord = {
    name,
    status,
    message: `${status} message`,
    targetReplicas: 1,
    runningReplicas: 0,
    updatedReplicas: 0,
    codeVersion: "x",
    generation,
    failures: 0,
    retryAt: 0,
    updatedAt: Date.now(),
    ...extra,
  };
  await redis.hset(keys.deploymentStatus, name, JSON.stringify(record));
}
