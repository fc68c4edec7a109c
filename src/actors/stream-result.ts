/**
 * Decides, inside a replica, what becomes of a handler's result that streams
 * (an async iterable, or a response() whose body is one): streamed to a
 * requester that reads a reply list, gathered into one answer for a client
 * that reads return values. Any other result is left to the ordinary reply.
 */
import type { Abortable } from "./request-abort.js";
import type { Redis } from "ioredis";
import { StreamWriterChannel } from "../queue/stream-channel.js";
import type { Keys } from "../shared/keys.js";
import type { Logger } from "../shared/logger.js";
import { isHttpResponse, lowerKeys, type RequestJob } from "../shared/protocol.js";
import type { ReplyOrigin } from "../shared/reply.js";
import { isStreamable } from "../shared/stream-protocol.js";
import { collectStream, writeStream } from "./stream-writer.js";

export interface StreamResultDeps {
  redis: Redis;
  keys: Keys;
  log: Logger;
  /** Whether a reply list is one this replica may write to. */
  accepts(replyTo: string): boolean;
  /** A writer id unique to this attempt at the request. */
  nextWriter(): string;
  origin(requestId: string): ReplyOrigin;
  requestTimeoutS?: number;
  streamTimeoutS?: number;
}

/** Whether a handler's result streams (else streamResult leaves it alone). */
export function streams(result: unknown): boolean {
  return isStreamable(isHttpResponse(result) ? result.body : result);
}

/**
 * `{ status }` once a stream was written (its head and chunks went out), `{ gathered }` for a result to answer
 * as one value, undefined for a result that does not stream. Throws what the handler threw before its first chunk.
 */
export async function streamResult(
  deps: StreamResultDeps,
  data: RequestJob,
  result: unknown,
  abort: Abortable,
  started: number,
): Promise<{ status: number } | { gathered: unknown } | undefined> {
  const body = isHttpResponse(result) ? result.body : result;
  if (!isStreamable(body)) return undefined;
  const { replyTo, requestId } = data;
  if (replyTo === undefined || requestId === undefined || !deps.accepts(replyTo)) {
    const values = await collectStream(body);
    return { gathered: isHttpResponse(result) ? { ...result, body: values } : values };
  }
  const writer = deps.nextWriter();
  const origin = deps.origin(requestId);
  const outcome = await writeStream({
    iterable: body,
    status: isHttpResponse(result) ? result.status : 200,
    headers: isHttpResponse(result) ? lowerKeys(result.headers) : {},
    channel: new StreamWriterChannel(deps.redis, deps.keys, { replyTo, requestId, writer }),
    writer,
    abort,
    head: (fields) => ({ ...fields, body: "", ...origin, ms: Math.round((performance.now() - started) * 1000) / 1000 }),
    ...(deps.requestTimeoutS !== undefined ? { idleTimeoutS: deps.requestTimeoutS } : {}),
    ...(deps.streamTimeoutS !== undefined ? { totalTimeoutS: deps.streamTimeoutS } : {}),
    log: deps.log,
  });
  if (outcome.ended === "error") throw outcome.error;
  return { status: outcome.status };
}
