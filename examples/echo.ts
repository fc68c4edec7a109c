import type { HttpRequest } from "flotilla";

/**
 * A function deployment. Over HTTP it gets the request and echoes it as JSON;
 * as a queue message (handle().call(payload)) it gets the payload itself.
 */
export default function echo(request: HttpRequest | unknown) {
  if (isHttp(request)) {
    return { method: request.method, path: request.subPath, query: request.query, body: request.body ? request.json() : null };
  }
  return { echoed: request };
}

function isHttp(value: unknown): value is HttpRequest {
  return typeof value === "object" && value !== null && "method" in value && "json" in value;
}
