/**
 * Every error answer is built here: a replica's reply to a request that
 * failed, the janitor's reply to a request no replica will answer, and a
 * router's HTTP answer to a request it refused. The status comes from the
 * errors table (src/errors.ts), never from the caller.
 */
import { ERROR_CODES, FlotillaError, type ErrorCode } from "../errors.js";
import type { Reply } from "./protocol.js";

export const JSON_CONTENT_TYPE = "application/json; charset=utf-8";

/** Codes that mean "not now, try again shortly": their answers carry Retry-After. */
const RETRY_AFTER_S: Partial<Record<ErrorCode, number>> = { BACKPRESSURE: 1, REDIS_UNAVAILABLE: 1 };

/** Who answers a request, copied onto its reply (empty for an answer that no replica gave). */
export interface ReplyOrigin {
  replica: string;
  version: string;
  requestId?: string;
}

export interface HttpAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** The HTTP answer for an error: the status of its code and the JSON body `{ error: { code, message, details? } }`. */
export function errorAnswer(error: FlotillaError): HttpAnswer {
  const headers: Record<string, string> = { "content-type": JSON_CONTENT_TYPE };
  const retryAfter = RETRY_AFTER_S[error.code];
  if (retryAfter !== undefined) headers["retry-after"] = String(retryAfter);
  return { status: ERROR_CODES[error.code].status, headers, body: JSON.stringify(error.toJSON()) };
}

/** The reply to a request that ends in an error: the HTTP answer above, with the error also as a field. */
export function errorReply(code: ErrorCode, message: string, origin: ReplyOrigin, details?: Record<string, unknown>): Reply {
  const error = new FlotillaError(code, message, details ? { details } : {});
  return { ...errorAnswer(error), error: error.toJSON().error, ...origin };
}

/** The origin fields of a reply: a request id only when the request had one. */
export function replyOrigin(replica: string, version: string, requestId: string | undefined): ReplyOrigin {
  const origin: ReplyOrigin = { replica, version };
  if (requestId !== undefined) origin.requestId = requestId;
  return origin;
}

/**
 * `fields`, a fresh object of the caller's, with the origin's fields set on
 * it: assigned rather than spread into a new object, which costs a replica
 * more per request.
 */
export function withOrigin<T extends object>(fields: T, origin: ReplyOrigin): T & ReplyOrigin {
  const out = fields as T & ReplyOrigin;
  out.replica = origin.replica;
  out.version = origin.version;
  if (origin.requestId !== undefined) out.requestId = origin.requestId;
  return out;
}
