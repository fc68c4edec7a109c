/**
 * A Lua script sent by its SHA1 (EVALSHA), and in full only when the server
 * does not know it yet (NOSCRIPT: a new or restarted Redis, another cluster
 * node). Scripts a process runs every second, on every host, would otherwise
 * send their text each time.
 */
import { createHash } from "node:crypto";
import type { Redis } from "ioredis";

export class LuaScript {
  readonly sha: string;

  constructor(readonly source: string) {
    this.sha = createHash("sha1").update(source).digest("hex");
  }

  /**
   * Sends the script on `redis` at once (in this turn). The full text, when
   * the server lacks it, goes on `fallback` if given: a caller that has put a
   * blocking command behind this one on `redis` would otherwise wait for it.
   */
  async run(redis: Redis, keys: readonly string[], args: ReadonlyArray<string | number | Buffer>, fallback: Redis = redis): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith("NOSCRIPT")) throw err;
      return fallback.eval(this.source, keys.length, ...keys, ...args);
    }
  }
}
