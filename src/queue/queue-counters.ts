/**
 * Cumulative job counts per deployment (`GET /api/traffic`'s jobs added; the
 * rates people see count requests instead: client/request-counter.ts). BullMQ gives every job added without an id of its own the next
 * value of the queue's `id` counter, and routers and handles add jobs that
 * way: one job per request, or one per batch of requests that arrived
 * together for a fast deployment.
 */
import type { Redis } from "ioredis";
import { QueueKeys } from "./queue-keys.js";

/** Deployment → jobs ever added to its queue (0 for a queue that has none yet). */
export async function jobsAdded(redis: Redis, namespace: string, deployments: readonly string[]): Promise<Record<string, number>> {
  if (deployments.length === 0) return {};
  const queues = new QueueKeys(namespace);
  // One command per key: each deployment's keys have their own hash tag (Redis Cluster slots).
  const values = await Promise.all(deployments.map((name) => redis.get(queues.of(name).id)));
  const out: Record<string, number> = {};
  deployments.forEach((name, i) => {
    out[name] = Number(values[i] ?? 0) || 0;
  });
  return out;
}
