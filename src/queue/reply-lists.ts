/**
 * Requesters' reply lists: where replicas (and the leader's janitor) push the
 * answer to a request that names one (`replyTo`). Only keys under the
 * namespace's reply prefix are written: job data comes from any client.
 */
import type { Redis } from "ioredis";
import type { Keys } from "../shared/keys.js";
import type { ReplySockets } from "./reply-sockets.js";

/** How long a reply list lives without its reader: a dead requester's replies expire. */
export const REPLY_TTL_MS = 120_000;

/**
 * Lua: appends replies to a reply list and renews its TTL, as one command.
 * (An ioredis pipeline would be one write too, but building one on a
 * connection that carries BullMQ's scripts copies all of them each time.)
 * KEYS[1] = reply list; ARGV[1] = TTL in ms; ARGV[2..] = replies (JSON).
 * Returns the list's length after the push.
 */
const PUSH_REPLIES = `
local n = redis.call("RPUSH", KEYS[1], unpack(ARGV, 2))
redis.call("PEXPIRE", KEYS[1], ARGV[1])
return n
`;

export class ReplyLists {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    /** When given, a requester with a reply socket gets its answers over it (see reply-sockets.ts). */
    private readonly sockets?: ReplySockets,
  ) {}

  /**
   * Whether `key` is a reply list of this namespace (the only keys a reply may go to): the prefix and a
   * requester id, which has no ':' (the keys beside a reply list, its streams and its socket's registration, do).
   */
  accepts(key: string): boolean {
    return key.startsWith(this.keys.repliesPrefix) && !key.includes(":", this.keys.repliesPrefix.length);
  }

  /** Sends replies (JSON) over the requester's socket, else appends them to its reply list in one command. The caller checked the key with accepts(). */
  async push(key: string, replies: readonly string[]): Promise<void> {
    if (replies.length === 0 || this.sockets?.send(key, replies)) return;
    await this.redis.eval(PUSH_REPLIES, 1, key, REPLY_TTL_MS, ...replies);
  }
}
