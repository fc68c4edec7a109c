/**
 * A replica's one subscriber connection, shared by the cancel channels it
 * listens to (requesters that went away, cancelled async requests). It opens
 * only when a channel is first needed: a replica whose requests all finish at
 * once never holds it. A message published before a channel's subscription is
 * live is not heard; its users read the state a cancel leaves in Redis once
 * listen() resolves.
 */
import type { Redis } from "ioredis";
import { createRedis } from "../shared/redis.js";

export class CancelSubscriber {
  private conn: Redis | undefined;
  private readonly subscribed = new Map<string, Promise<void>>();
  private readonly handlers = new Map<string, (message: string) => void>();
  private isClosed = false;

  constructor(
    private readonly redisUrl: string,
    private readonly name: string,
  ) {}

  /** Whether the connection was ever opened. */
  get opened(): boolean {
    return this.conn !== undefined;
  }

  /** Subscribes to `channel` once (again after a failure); resolves once its messages reach `onMessage`. */
  listen(channel: string, onMessage: (message: string) => void): Promise<void> {
    let subscribed = this.subscribed.get(channel);
    if (!subscribed) {
      if (this.isClosed) return Promise.reject(new Error("the cancel subscriber is closed"));
      this.handlers.set(channel, onMessage);
      subscribed = this.connection()
        .subscribe(channel)
        .then(() => undefined);
      subscribed.catch(() => this.subscribed.delete(channel));
      this.subscribed.set(channel, subscribed);
    }
    return subscribed;
  }

  private connection(): Redis {
    if (!this.conn) {
      // ioredis subscribes again by itself after a reconnect.
      this.conn = createRedis(this.redisUrl, { name: this.name });
      this.conn.on("message", (channel: string, message: string) => this.handlers.get(channel)?.(message));
    }
    return this.conn;
  }

  /** Closed: listen() refuses from now on. */
  get closed(): boolean {
    return this.isClosed;
  }

  async close(): Promise<void> {
    this.isClosed = true;
    const conn = this.conn;
    if (conn) await conn.quit().catch(() => conn.disconnect());
  }
}
