/**
 * Connections for blocking reads (one per stream being read), kept for reuse:
 * a requester streaming many answers at once opens as many, and keeps a few
 * idle ones for the next streams.
 */
import type { Redis } from "ioredis";
import { createRedis } from "../shared/redis.js";

const KEEP_IDLE = 8;

export class BlockingPool {
  private readonly idle: Redis[] = [];
  private readonly all = new Set<Redis>();
  private opened = 0;

  constructor(
    private readonly redisUrl: string,
    private readonly name: string,
  ) {}

  acquire(): Redis {
    const conn = this.idle.pop() ?? createRedis(this.redisUrl, { name: `${this.name}-stream-${this.opened++}` });
    this.all.add(conn);
    return conn;
  }

  release(conn: Redis): void {
    if (this.idle.length < KEEP_IDLE && conn.status === "ready") this.idle.push(conn);
    else {
      this.all.delete(conn);
      conn.disconnect();
    }
  }

  close(): void {
    for (const conn of this.all) conn.disconnect();
    this.all.clear();
    this.idle.length = 0;
  }
}
