import type { HttpRequest } from "flotilla";

/** A function deployment: echoes the request back as JSON. */
export default function echo(request: HttpRequest) {
  return { method: request.method, path: request.subPath, query: request.query, body: request.body ? request.json() : null };
}
