/**
 * Redis connections. One URL (`redis://`, `rediss://` with user and password)
 * configures every process; `REDIS_URL` is the default everywhere.
 */
import { Cluster, Redis, type RedisOptions } from "ioredis";

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

/**
 * `redis+cluster://[user:pass@]host:port,host:port` (or `rediss+cluster://` for
 * TLS) names a Redis Cluster by some of its nodes; undefined for any other URL.
 */
export function parseClusterUrl(url: string): { nodes: Array<{ host: string; port: number }>; username?: string; password?: string; tls: boolean } | undefined {
  const match = /^(rediss?)\+cluster:\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/?#]+)/.exec(url);
  if (!match) return undefined;
  const nodes = (match[4] ?? "").split(",").map((hp) => {
    const [host = "127.0.0.1", port = "6379"] = hp.trim().split(":");
    return { host, port: Number(port) };
  });
  return {
    nodes,
    tls: match[1] === "rediss",
    ...(match[2] ? { username: decodeURIComponent(match[2]) } : {}),
    ...(match[3] ? { password: decodeURIComponent(match[3]) } : {}),
  };
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
  const cluster = parseClusterUrl(url);
  if (cluster) {
    const { enableOfflineQueue, retryStrategy, enableAutoPipelining, ...nodeOptions } = redisOptions;
    const client = new Cluster(cluster.nodes, {
      enableOfflineQueue,
      enableAutoPipelining,
      clusterRetryStrategy: retryStrategy,
      redisOptions: {
        ...nodeOptions,
        ...(cluster.username ? { username: cluster.username } : {}),
        ...(cluster.password ? { password: cluster.password } : {}),
        ...(cluster.tls ? { tls: {} } : {}),
      },
    });
    client.on("error", () => undefined);
    // A Cluster answers every command Flotilla sends: all multi-key operations stay within one hash tag.
    return client as unknown as Redis;
  }
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
