/**
 * The wire format between requesters (routers, handles, any Redis client) and
 * replicas. A request is a job in the deployment's queue; its data is a
 * RequestJob (or a BatchJob of several), checked by the schema in job-data.ts.
 * The answer is a Reply: pushed onto the requester's reply list when the job
 * names one (`replyTo`), and always the job's return value.
 */
import type { ErrorCode } from "../errors.js";

/** An HTTP request as a handler sees it (without the `json()` helper, which replicas add). */
export interface HttpRequestData {
  method: string;
  /** The path below the deployment's routePrefix is in `subPath`; `path` is the full request path. */
  path: string;
  subPath: string;
  query: Record<string, string | string[]>;
  headers: Record<string, string>;
  /** The body decoded as UTF-8 text ("" when there is none). */
  body: string;
}

/**
 * Data of a request job. `http` from routers; `call` from handles and other programs. `asyncId`: an async
 * request, answered in its record (queue/async-requests.ts) rather than on a reply list.
 */
export type RequestJob =
  | { kind: "http"; http: HttpRequestData; replyTo?: string; requestId?: string; asyncId?: string }
  | { kind: "call"; payload: unknown; replyTo?: string; requestId?: string; asyncId?: string };

/**
 * Several requests added together by one requester, as one job: what routers
 * send when a deployment answers fast and requests arrive together. Each
 * request is answered on its own reply list, as if it were a job of its own.
 */
export interface BatchJob {
  kind: "batch";
  requests: RequestJob[];
}

/** Anything a replica takes from its queue. */
export type QueueJob = RequestJob | BatchJob;

/** The answer to a request job. */
export interface Reply {
  /** The requester's correlation id, copied from the job. */
  requestId?: string;
  /** HTTP status: the handler's on success; on an error, its code's status in the errors table. */
  status: number;
  headers: Record<string, string>;
  /** Response body; base64 when `base64` is true. */
  body: string;
  base64?: boolean;
  /** For `call` jobs: the handler's return value (JSON). */
  value?: unknown;
  /** Set when the request failed: a stable code, a message (the handler's, when it threw), and details such as the field in error. */
  error?: { code: ErrorCode; message: string; details?: Record<string, unknown> };
  /** Which replica answered, and its code version. */
  replica: string;
  version: string;
  /** How long the handler took (ms): lets requesters see how fast the deployment answers. */
  ms?: number;
  /** Set on the head of a streamed answer: the body comes as chunks (stream-protocol.ts) from this writer. */
  stream?: { writer: string };
}

/** The response object a handler may return to set status and headers. */
export interface HttpResponse {
  readonly __flotillaResponse: true;
  status: number;
  headers: Record<string, string>;
  body: string | Uint8Array | object | AsyncIterable<unknown> | null;
}

/**
 * Build an explicit HTTP response from a handler.
 * @example return response({ status: 201, headers: { location: "/items/1" }, body: { id: 1 } });
 */
export function response(init: { status?: number; headers?: Record<string, string>; body?: string | Uint8Array | object | AsyncIterable<unknown> | null }): HttpResponse {
  return { __flotillaResponse: true, status: init.status ?? 200, headers: init.headers ?? {}, body: init.body ?? null };
}

export function isHttpResponse(value: unknown): value is HttpResponse {
  return typeof value === "object" && value !== null && (value as { __flotillaResponse?: unknown }).__flotillaResponse === true;
}

export function lowerKeys(headers: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) out[k.toLowerCase()] = String(v);
  return out;
}

/** Encodes whatever a handler returned as status, headers and body. */
export function encodeResult(result: unknown): Pick<Reply, "status" | "headers" | "body" | "base64"> {
  if (!isHttpResponse(result)) return encodeBody(200, undefined, result, 204);
  return encodeBody(result.status, lowerKeys(result.headers), result.body, result.status);
}

/** `headers`: the handler's own (undefined for none: the common case, no copy); `emptyStatus`: the status of a body that is null or undefined. */
function encodeBody(status: number, headers: Record<string, string> | undefined, body: unknown, emptyStatus: number): Pick<Reply, "status" | "headers" | "body" | "base64"> {
  if (body === undefined || body === null) return { status: emptyStatus, headers: headers ?? {}, body: "" };
  if (typeof body === "string") return { status, headers: withType("text/plain; charset=utf-8", headers), body };
  if (body instanceof Uint8Array) {
    return { status, headers: withType("application/octet-stream", headers), body: Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString("base64"), base64: true };
  }
  return { status, headers: withType("application/json; charset=utf-8", headers), body: JSON.stringify(body) };
}

/** A content type, overridden by the handler's own headers when they set one. */
function withType(contentType: string, headers: Record<string, string> | undefined): Record<string, string> {
  return headers ? { "content-type": contentType, ...headers } : { "content-type": contentType };
}
