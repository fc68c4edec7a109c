/** Test namespaces on the real Redis (a single server or a Redis Cluster): unique per test, removed afterwards. */
import { randomUUID } from "node:crypto";
import type { Cluster, Redis } from "ioredis";
import { Keys } from "../../src/shared/keys.js";
import { createRedis, parseClusterUrl, waitReady } from "../../src/shared/redis.js";

export const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";

export function testNamespace(label: string): string {
  return `t-${label}-${randomUUID().slice(0, 8)}`.slice(0, 64);
}

export function testRedis(url = REDIS_URL): Redis {
  return createRedis(url, { name: "flotilla-test" });
}

/** Deletes every key of the namespace (on each master of a cluster). */
export async function cleanupNamespace(namespace: string, url = REDIS_URL): Promise<void> {
  const redis = testRedis(url);
  try {
    await waitReady(redis, 5000);
    const nodes = parseClusterUrl(url) ? (redis as unknown as Cluster).nodes("master") : [redis];
    for (const node of nodes) {
      for (const pattern of new Keys(namespace).patterns) {
        let cursor = "0";
        do {
          const [next, keys] = await node.scan(cursor, "MATCH", pattern, "COUNT", 1000);
          cursor = next;
          for (const key of keys) await node.del(key);
        } while (cursor !== "0");
      }
    }
  } finally {
    redis.disconnect();
  }
}
