/**
 * Redis connections. One URL (`redis://`, `rediss://` with user and password)
 * configures every process; `REDIS_URL` is the default everywhere.
 */
import { Redis, type RedisOptions } from "ioredis";

export const DEFAULT_REDIS_URL = "redis://127.0.0.1:6379";
export const DEFAULT_NAMESPACE = "flotilla";

export function defaultRedisUrl(): string {
  return process.env.REDIS_URL ?? DEFAULT_REDIS_URL;
}

export function defaultNamespace(): string {
  return process.env.FLOTILLA_NAMESPACE ?? DEFAULT_NAMESPACE;
}

export interface ConnectionOptions {
  /**
   * `blocking`: commands wait through an outage (BullMQ workers, reply readers).
   * `failFast`: commands fail at once while disconnected (request paths that must answer 503).
   * @default "blocking"
   */
  mode?: "blocking" | "failFast";
  /** Connection name shown by CLIENT LIST. */
  name?: string;
  /**
   * Send the commands issued in one event-loop turn as one write (request paths:
   * many concurrent requests become one round trip). @default false
   */
  autoPipelining?: boolean;
}

/** A new ioredis connection that keeps reconnecting (never gives up) with capped back-off. */
export function createRedis(url: string, options: ConnectionOptions = {}): Redis {
  const failFast = options.mode === "failFast";
  const redisOptions: RedisOptions = {
    lazyConnect: false,
    maxRetriesPerRequest: failFast ? 0 : null,
    enableOfflineQueue: !failFast,
    enableReadyCheck: true,
    retryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 6), 1000),
    enableAutoPipelining: options.autoPipelining ?? false,
    ...(options.name ? { connectionName: options.name } : {}),
  };
  const redis = new Redis(url, redisOptions);
  // Errors are reported by the owners through status checks; an unhandled 'error' event must not crash the process.
  redis.on("error", () => undefined);
  return redis;
}

/** Resolves once the connection is ready, or rejects after `timeoutMs`. */
export async function waitReady(redis: Redis, timeoutMs = 5000): Promise<void> {
  if (redis.status === "ready") return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`Redis did not become ready within ${timeoutMs} ms (status ${redis.status})`));
    }, timeoutMs);
    const onReady = (): void => {
      cleanup();
      resolve();
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      redis.off("ready", onReady);
    };
    redis.on("ready", onReady);
  });
}

/** Closes a connection without throwing if it is already gone. */
export async function closeRedis(redis: Redis): Promise<void> {
  try {
    await redis.quit();
  } catch {
    redis.disconnect();
  }
}
