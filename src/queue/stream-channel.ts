/**
 * A streamed answer's Redis side. One writer (a replica's attempt at the
 * request) appends chunk entries to the stream's list, never more than
 * STREAM_MAX_UNREAD unread; its requester pops them with blocking reads. The
 * writer keeps an alive key while the stream is open, so a reader tells a
 * dead replica from a slow handler; the reader sets a cancel key when it stops
 * reading, which every attempt at the request checks. Every key expires.
 */
import type { Redis } from "ioredis";
import type { Keys } from "../shared/keys.js";
import { STREAM_ALIVE_TTL_MS, STREAM_MAX_UNREAD, STREAM_TTL_MS } from "../shared/stream-protocol.js";
import { REPLY_TTL_MS } from "./reply-lists.js";

/**
 * Lua: appends as many entries as there is room for, renews the alive key and,
 * with the first chunk, pushes the head onto the requester's reply list.
 * KEYS[1] = chunk list, KEYS[2] = alive key, KEYS[3] = cancel key, KEYS[4] = reply list;
 * ARGV[1] = most unread entries, ARGV[2] = list TTL ms, ARGV[3] = alive TTL ms, ARGV[4] = writer id,
 * ARGV[5] = reply TTL ms, ARGV[6] = head reply JSON or "", ARGV[7..] = entries.
 * Returns the number of entries appended, or -1 when the reader cancelled.
 */
const PUSH_ENTRIES = `
if redis.call("EXISTS", KEYS[3]) == 1 then return -1 end
redis.call("SET", KEYS[2], ARGV[4], "PX", ARGV[3])
local room = tonumber(ARGV[1]) - redis.call("LLEN", KEYS[1])
local n = math.min(room, #ARGV - 6)
if n <= 0 then return 0 end
for i = 7, 6 + n, 100 do
  redis.call("RPUSH", KEYS[1], unpack(ARGV, i, math.min(i + 99, 6 + n)))
end
redis.call("PEXPIRE", KEYS[1], ARGV[2])
if ARGV[6] ~= "" then
  redis.call("RPUSH", KEYS[4], ARGV[6])
  redis.call("PEXPIRE", KEYS[4], ARGV[5])
end
return n
`;

/**
 * Lua: renews the alive key while the handler is between chunks.
 * KEYS[1] = alive key, KEYS[2] = cancel key; ARGV[1] = writer id, ARGV[2] = alive TTL ms.
 * Returns 1 when the reader cancelled.
 */
const RENEW = `
if redis.call("EXISTS", KEYS[2]) == 1 then return 1 end
redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
return 0
`;

export interface StreamAddress {
  /** The requester's reply list (checked by the caller to be one of this namespace's). */
  replyTo: string;
  requestId: string;
  writer: string;
}

/** The replica's side of one stream. */
export class StreamWriterChannel {
  private readonly chunks: string;
  private readonly alive: string;
  private readonly cancel: string;

  constructor(
    private readonly redis: Redis,
    keys: Keys,
    private readonly address: StreamAddress,
  ) {
    ({ chunks: this.chunks, alive: this.alive, cancel: this.cancel } = keys.streamKeys(address.replyTo, address.requestId, address.writer));
  }

  /** Appends what fits of `entries` (and, with the first ones, the head); resolves with how many went, -1 if cancelled. */
  async push(entries: readonly string[], head?: string): Promise<number> {
    const n = (await this.redis.eval(
      PUSH_ENTRIES,
      4,
      this.chunks,
      this.alive,
      this.cancel,
      this.address.replyTo,
      STREAM_MAX_UNREAD,
      STREAM_TTL_MS,
      STREAM_ALIVE_TTL_MS,
      this.address.writer,
      REPLY_TTL_MS,
      head ?? "",
      ...entries,
    )) as number;
    return n;
  }

  /** Renews the alive key; resolves with whether the reader cancelled. */
  async renew(): Promise<boolean> {
    return ((await this.redis.eval(RENEW, 2, this.alive, this.cancel, this.address.writer, STREAM_ALIVE_TTL_MS)) as number) === 1;
  }

  /** The stream ended: the writer is no longer alive. The list stays until read or expired, unless the reader cancelled. */
  async close(cancelled: boolean): Promise<void> {
    if (cancelled) await this.redis.del(this.alive, this.chunks);
    else await this.redis.del(this.alive);
  }
}

/** The requester's side of one stream, read over a connection of its own (blocking reads). */
export class StreamReaderChannel {
  private readonly chunks: string;
  private readonly alive: string;
  private readonly cancelKey: string;

  constructor(
    private readonly keys: Keys,
    private readonly address: StreamAddress,
  ) {
    ({ chunks: this.chunks, alive: this.alive, cancel: this.cancelKey } = keys.streamKeys(address.replyTo, address.requestId, address.writer));
  }

  /** Pops up to `count` entries, waiting up to `blockS` for the first; [] when none came. */
  async read(conn: Redis, count: number, blockS: number): Promise<string[]> {
    const res = (await conn.call("BLMPOP", String(blockS), "1", this.chunks, "LEFT", "COUNT", String(count))) as [string, string[]] | null;
    return res ? res[1] : [];
  }

  /** Whether the writer still holds the stream (its alive key names it). */
  async writerAlive(conn: Redis): Promise<boolean> {
    return (await conn.get(this.alive)) === this.address.writer;
  }

  /**
   * Stops the stream: every attempt at the request sees the cancel key at its next write or renewal,
   * the replicas hear it on the deployment's cancel channel at once, and the unread chunks go.
   */
  async cancel(conn: Redis, deployment: string): Promise<void> {
    await conn
      .multi()
      .set(this.cancelKey, "1", "PX", STREAM_TTL_MS)
      .del(this.chunks)
      .publish(this.keys.cancels(deployment), `${this.address.replyTo}\n${this.address.requestId}`)
      .exec();
  }

  /** Read to the end: nothing stays behind. */
  async finish(conn: Redis): Promise<void> {
    await conn.del(this.chunks);
  }
}

/** Says the requester went away from a request that is not (or not yet) a stream: the replica running it aborts it. */
export async function publishCancel(conn: Redis, keys: Keys, deployment: string, replyTo: string, requestId: string): Promise<void> {
  const { cancel } = keys.streamKeys(replyTo, requestId, "");
  await conn.multi().set(cancel, "1", "PX", STREAM_TTL_MS).publish(keys.cancels(deployment), `${replyTo}\n${requestId}`).exec();
}
