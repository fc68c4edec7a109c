/**
 * How much work deployments' queues hold, as the autoscaler and status see it.
 * A read only: it never writes (stale requester counts are the leader's to
 * delete: it deletes those a read found, see deleteStale).
 */
import type { Redis } from "ioredis";
import type { Keys } from "../shared/keys.js";
import { QueueKeys } from "./queue-keys.js";
import { sumRequested } from "./requester-demand.js";

export interface QueueDepth {
  waiting: number;
  active: number;
  /** Jobs that failed outside a handler (their replica crashed more than maxRetries times): still to be answered. */
  failed: number;
  /**
   * Requests that requesters (routers, handles) wait on: in the queue, in a replica, one job each or in
   * batch jobs. Counts requests, where `waiting` and `active` count jobs. @default 0
   */
  requested?: number;
  /** Requester counts found stale (their requesters died), as read: only when there are some. */
  stale?: Array<[field: string, value: string]>;
}

/**
 * Waiting (incl. prioritized and delayed-to-wait) and active counts of several deployments, and the requests
 * their requesters wait on, in one round trip.
 */
export async function queueDepths(redis: Redis, keys: Keys, deployments: readonly string[]): Promise<Map<string, QueueDepth>> {
  const queueKeys = new QueueKeys(keys.namespace);
  const out = new Map<string, QueueDepth>();
  // One pipeline per deployment (its keys share a hash tag, so this also works on a Redis Cluster), all sent at once.
  const results = await Promise.all(
    deployments.map((name) => {
      const k = queueKeys.of(name);
      return redis.pipeline().llen(k.wait).zcard(k.prioritized).llen(k.active).zcard(k.failed).hgetall(k.requesters).time().exec();
    }),
  );
  deployments.forEach((name, i) => {
    const num = (j: number): number => Number(results[i]?.[j]?.[1] ?? 0);
    const time = results[i]?.[5]?.[1] as Array<string | number> | undefined;
    const { requested, stale } = sumRequested(results[i]?.[4]?.[1] as Record<string, string> | undefined, Number(time?.[0] ?? 0));
    out.set(name, { waiting: num(0) + num(1), active: num(2), failed: num(3), requested, ...(stale.length > 0 ? { stale } : {}) });
  });
  return out;
}
