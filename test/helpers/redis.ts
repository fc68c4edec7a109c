/** Test namespaces on the real Redis: unique per test, removed afterwards. */
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { Keys } from "../../src/shared/keys.js";

export const REDIS_URL = process.env.REDIS_URL ?? "redis://127.0.0.1:6379";

export function testNamespace(label: string): string {
  return `t-${label}-${randomUUID().slice(0, 8)}`.slice(0, 64);
}

export function testRedis(url = REDIS_URL): Redis {
  const redis = new Redis(url, { maxRetriesPerRequest: null });
  redis.on("error", () => undefined);
  return redis;
}

/** Deletes every key of the namespace. */
export async function cleanupNamespace(namespace: string, url = REDIS_URL): Promise<void> {
  const redis = testRedis(url);
  try {
    for (const pattern of new Keys(namespace).patterns) {
      let cursor = "0";
      do {
        const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000);
        cursor = next;
        if (keys.length > 0) await redis.del(...keys);
      } while (cursor !== "0");
    }
  } finally {
    redis.disconnect();
  }
}
