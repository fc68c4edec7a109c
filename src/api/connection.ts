/**
 * A connection to one Flotilla cluster (a Redis URL and a namespace): what the
 * programmatic API uses to deploy, call and inspect deployments.
 */
import type { Redis } from "ioredis";
import { AsyncRequestClient } from "../client/async-request-client.js";
import { RequestClient } from "../client/request-client.js";
import { Keys } from "../shared/keys.js";
import { closeRedis, createRedis, defaultNamespace, defaultRedisUrl } from "../shared/redis.js";

export interface ConnectOptions {
  /** Redis URL (`redis://`, `rediss://user:pass@host:port/db`). @default REDIS_URL or redis://127.0.0.1:6379 */
  redis?: string;
  /** Cluster namespace: every key lives under it. @default FLOTILLA_NAMESPACE or "flotilla" */
  namespace?: string;
}

export class Connection {
  readonly redisUrl: string;
  readonly namespace: string;
  readonly keys: Keys;
  private redisConn: Redis | undefined;
  private requests: RequestClient | undefined;
  private asyncRequests: AsyncRequestClient | undefined;

  constructor(options: ConnectOptions = {}) {
    this.redisUrl = options.redis ?? defaultRedisUrl();
    this.namespace = options.namespace ?? defaultNamespace();
    this.keys = new Keys(this.namespace);
  }

  /** The control-plane connection (opened on first use). */
  get redis(): Redis {
    this.redisConn ??= createRedis(this.redisUrl, { name: "flotilla-api" });
    return this.redisConn;
  }

  /** The request path (opened on first use). */
  get requestClient(): RequestClient {
    this.requests ??= new RequestClient({ redisUrl: this.redisUrl, namespace: this.namespace });
    return this.requests;
  }

  /** Async requests: submit, read, cancel (on the control-plane connection). */
  get asyncClient(): AsyncRequestClient {
    this.asyncRequests ??= new AsyncRequestClient(this.redis, this.keys);
    return this.asyncRequests;
  }

  /** Closes the connections; pending calls are rejected. */
  async close(): Promise<void> {
    await this.asyncRequests?.close();
    this.asyncRequests = undefined;
    const requests = this.requests;
    const redis = this.redisConn;
    this.requests = undefined;
    this.redisConn = undefined;
    await requests?.close();
    if (redis) await closeRedis(redis);
  }
}

let defaultConnection: Connection | undefined;

/** Sets the connection the API uses from now on (closing a previous default one). */
export function connect(options: ConnectOptions = {}): Connection {
  const previous = defaultConnection;
  defaultConnection = new Connection(options);
  if (previous) void previous.close();
  return defaultConnection;
}

/** The default connection: the last `connect()`, or one from REDIS_URL / FLOTILLA_NAMESPACE. */
export function currentConnection(): Connection {
  defaultConnection ??= new Connection();
  return defaultConnection;
}

/** Closes the default connection so the program can exit. */
export async function disconnect(): Promise<void> {
  const conn = defaultConnection;
  defaultConnection = undefined;
  await conn?.close();
}
