/**
 * The router's async requests: a request with `Prefer: respond-async` (RFC
 * 7240) is queued and answered 202 at once; `GET /-/requests/<id>` reads it
 * (`?wait=S` long-polls for a change), `DELETE /-/requests/<id>` cancels it.
 * Everything lives in Redis, so any router answers for any request.
 */
import type { IncomingMessage } from "node:http";
import { FlotillaError } from "../errors.js";
import type { HttpRequestData } from "../shared/protocol.js";
import { JSON_CONTENT_TYPE, type HttpAnswer } from "../shared/reply.js";
import { DEFAULT_ASYNC_RESULT_TTL_S } from "../spec/deployment-spec.js";
import { MAX_WAIT_S, type AsyncRequestClient } from "../client/async-request-client.js";
import type { Route } from "./route-table.js";

/** The path of async requests' records; the id follows. */
export const REQUESTS_PATH = "/-/requests/";

/**
 * Whether a `Prefer` header (RFC 7240: comma-separated preferences, each a
 * token with an optional `=value` and `;parameters`, values possibly quoted)
 * asks for `respond-async`. Preference names are case-insensitive.
 */
export function prefersAsync(header: string | undefined): boolean {
  if (header === undefined) return false;
  for (const preference of splitOutsideQuotes(header, ",")) {
    const first = splitOutsideQuotes(preference, ";")[0] ?? "";
    const name = (first.split("=")[0] ?? "").trim().toLowerCase();
    if (name === "respond-async") return true;
  }
  return false;
}

function splitOutsideQuotes(text: string, separator: string): string[] {
  const parts: string[] = [];
  let current = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (quoted && c === "\\" && i + 1 < text.length) {
      current += c + (text[i + 1] as string);
      i++;
      continue;
    }
    if (c === '"') quoted = !quoted;
    if (c === separator && !quoted) {
      parts.push(current);
      current = "";
    } else current += c;
  }
  parts.push(current);
  return parts;
}

/** `?wait=S`: 0 when absent; seconds (fractions allowed), at most MAX_WAIT_S. */
export function waitSeconds(raw: string | null): number {
  if (raw === null || raw === "") return 0;
  const s = Number(raw);
  if (!Number.isFinite(s) || s < 0) throw new FlotillaError("INVALID_REQUEST", `wait: expected seconds (a number from 0 to ${MAX_WAIT_S}), got '${raw.slice(0, 40)}'`, { details: { field: "wait" } });
  return Math.min(s, MAX_WAIT_S);
}

const json = (status: number, body: unknown, headers: Record<string, string> = {}): HttpAnswer => ({
  status,
  headers: { "content-type": JSON_CONTENT_TYPE, ...headers },
  body: JSON.stringify(body),
});

export class AsyncRoutes {
  constructor(private readonly client: AsyncRequestClient) {}

  /** Queues an async request: 202 with its Location. */
  async accept(route: Route, request: HttpRequestData): Promise<HttpAnswer> {
    const id = await this.client.submit(route.deployment, { kind: "http", http: request }, {
      resultTtlS: route.asyncResultTtlS ?? DEFAULT_ASYNC_RESULT_TTL_S,
      ...(route.maxQueuedRequests !== undefined ? { maxQueued: route.maxQueuedRequests } : {}),
    });
    return json(202, { id, status: "queued" }, { location: `${REQUESTS_PATH}${id}`, "preference-applied": "respond-async" });
  }

  /** GET or DELETE /-/requests/<id>. */
  async serve(req: IncomingMessage, url: URL): Promise<HttpAnswer> {
    const id = decodeURIComponent(url.pathname.slice(REQUESTS_PATH.length));
    if (req.method === "GET" || req.method === "HEAD") return json(200, await this.client.wait(id, waitSeconds(url.searchParams.get("wait"))));
    if (req.method === "DELETE") return json(200, await this.client.cancel(id));
    throw new FlotillaError("INVALID_REQUEST", `method ${req.method ?? "?"} is not allowed on ${REQUESTS_PATH}<id>: GET reads an async request, DELETE cancels it`, { details: { field: "method" } });
  }
}
