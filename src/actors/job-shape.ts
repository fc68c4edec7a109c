/**
 * The job data routers and handles send, recognised without zod. What this
 * accepts, the schema in job-data.ts accepts too and turns into the same value
 * (test/unit/job-shape.test.ts compares them on generated data); anything else
 * goes to that schema, which answers it or names the field in error. So a
 * replica loads zod only on the first job that is not of this shape: zod is a
 * large part of an idle replica's memory (README, Performance).
 */
import type { RequestJob } from "../shared/protocol.js";

/** The UUIDs z.uuid() accepts, lower-case only (those newAsyncId makes); any other goes to the schema. */
const ASYNC_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

type Fields = Record<string, unknown>;

const isFields = (v: unknown): v is Fields => typeof v === "object" && v !== null && !Array.isArray(v);
const isString = (v: unknown): v is string => typeof v === "string";
const isQueryValue = (v: unknown): boolean => typeof v === "string" || (Array.isArray(v) && v.every(isString));

/** The same test as job-data.ts's stringMap. */
function isMap(v: unknown, valueOk: (value: unknown) => boolean): boolean {
  if (!isFields(v)) return false;
  for (const key in v) if (!valueOk(v[key])) return false;
  return true;
}

/** An optional field: absent, or present and of its type (a present undefined goes to the schema). */
function optional(fields: Fields, key: string, ok: (v: unknown) => boolean): boolean {
  return !(key in fields) || ok(fields[key]);
}

/** `job` with the reply address fields `data` has. Assigned, not spread: a spread of conditional objects costs more per request than the rest of the check. */
function withAddress(job: RequestJob, data: Fields): RequestJob {
  if ("replyTo" in data) job.replyTo = data.replyTo as string;
  if ("requestId" in data) job.requestId = data.requestId as string;
  if ("asyncId" in data) job.asyncId = data.asyncId as string;
  return job;
}

/** The request as the schema would return it, or undefined when the schema must decide. */
export function requestShape(data: unknown): RequestJob | undefined {
  if (!isFields(data)) return undefined;
  if (!optional(data, "replyTo", isString) || !optional(data, "requestId", isString)) return undefined;
  if (!optional(data, "asyncId", (v) => isString(v) && ASYNC_ID.test(v))) return undefined;
  if (data.kind === "call") return withAddress({ kind: "call", payload: data.payload }, data);
  if (data.kind !== "http") return undefined;
  const http = data.http;
  if (!isFields(http) || !isString(http.method) || !isString(http.path)) return undefined;
  if (!optional(http, "subPath", isString) || !optional(http, "body", isString)) return undefined;
  if (!optional(http, "query", (v) => isMap(v, isQueryValue)) || !optional(http, "headers", (v) => isMap(v, isString))) return undefined;
  return withAddress({
    kind: "http",
    http: {
      method: http.method,
      path: http.path,
      subPath: (http.subPath as string | undefined) ?? http.path,
      query: (http.query as Record<string, string | string[]> | undefined) ?? {},
      headers: (http.headers as Record<string, string> | undefined) ?? {},
      body: (http.body as string | undefined) ?? "",
    },
  }, data);
}

/** A job's data as the schema would return it (a batch's requests still to be checked one by one), or undefined. */
export function queueJobShape(data: unknown): { kind: "batch"; requests: unknown[] } | RequestJob | undefined {
  if (isFields(data) && data.kind === "batch") return Array.isArray(data.requests) ? { kind: "batch", requests: [...(data.requests as unknown[])] } : undefined;
  return requestShape(data);
}
