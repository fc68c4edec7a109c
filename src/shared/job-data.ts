/**
 * The one schema of job data (the wire format in protocol.ts), applied at a
 * replica's edge: a job is an input from any Redis client, not only from our
 * routers, so nothing reaches a handler before it matches. Problems name the
 * field, e.g. `requests[2].http.method: expected string, received number`.
 */
import { z } from "zod";
import type { BatchJob, RequestJob } from "./protocol.js";

const isString = (v: unknown): boolean => typeof v === "string";
const isQueryValue = (v: unknown): boolean => typeof v === "string" || (Array.isArray(v) && v.every(isString));

/**
 * An object whose every value passes `valueOk`. Checked in one pass, not as a
 * z.record (which costs more than the rest of a job's check together): the
 * message names the map, not the entry.
 */
function stringMap<T>(valueOk: (v: unknown) => boolean, what: string): z.ZodType<Record<string, T>> {
  return z.custom<Record<string, T>>(
    (v) => {
      if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
      for (const key in v) if (!valueOk((v as Record<string, unknown>)[key])) return false;
      return true;
    },
    { message: `expected an object whose values are ${what}` },
  );
}

const httpRequest = z.object({
  method: z.string(),
  path: z.string(),
  /** @default the path */
  subPath: z.string().optional(),
  /** @default {} */
  query: stringMap<string | string[]>(isQueryValue, "strings or arrays of strings").optional(),
  /** @default {} */
  headers: stringMap<string>(isString, "strings").optional(),
  /** @default "" */
  body: z.string().optional(),
});

const addressed = {
  /** The requester's reply list; the answer is also pushed there. */
  replyTo: z.string().optional(),
  /** The requester's correlation id, copied onto the reply. */
  requestId: z.string().optional(),
  /** An async request's id (a random UUID): the replica answers in its record. */
  asyncId: z.uuid().optional(),
};

const requestJob = z.discriminatedUnion("kind", [
  z.object({ kind: z.literal("http"), http: httpRequest, ...addressed }),
  z.object({ kind: z.literal("call"), payload: z.unknown().optional(), ...addressed }),
]);

/** A batch's requests are checked one by one (requestJobData), so one bad request fails alone. */
const batchJob = z.object({ kind: z.literal("batch"), requests: z.array(z.unknown()) });

// Every request a requester builds passes the schema (checked when compiling).
true satisfies RequestJob extends z.input<typeof requestJob> ? true : never;

export interface JobDataProblem {
  /** The path of the first field in error, e.g. `http.method` ("" for the data as a whole). */
  field: string;
  /** `<field>: <what is wrong>`. */
  message: string;
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; problem: JobDataProblem };

function fieldPath(prefix: string, path: ReadonlyArray<PropertyKey>): string {
  let out = prefix;
  for (const part of path) out += typeof part === "number" ? `[${part}]` : out === "" ? String(part) : `.${String(part)}`;
  return out;
}

function problemOf(error: z.ZodError, prefix: string): JobDataProblem {
  const issue = error.issues[0];
  const field = fieldPath(prefix, issue?.path ?? []);
  let what = (issue?.message ?? "not valid").replace(/^Invalid input: /, "");
  if (issue?.code === "invalid_union" && issue.path.at(-1) === "kind") what = 'must be "call", "http" or "batch"';
  return { field, message: `${field || "job data"}: ${what}` };
}

/** A request's data (one job's, or one of a batch's at `requests[i]`) as the handler may see it. */
export function requestJobData(data: unknown, field = ""): Parsed<RequestJob> {
  const parsed = requestJob.safeParse(data);
  if (!parsed.success) return { ok: false, problem: problemOf(parsed.error, field) };
  const job = parsed.data;
  if (job.kind === "call") return { ok: true, value: { ...job, payload: job.payload } };
  // Defaults filled here: zod's .default() costs more than the whole check.
  const { method, path, subPath, query, headers, body } = job.http;
  return { ok: true, value: { ...job, http: { method, path, subPath: subPath ?? path, query: query ?? {}, headers: headers ?? {}, body: body ?? "" } } };
}

/** A job's data: a batch (its requests still to be checked one by one) or a request. */
export function queueJobData(data: unknown): Parsed<{ kind: "batch"; requests: unknown[] } | RequestJob> {
  if ((data as { kind?: unknown } | null | undefined)?.kind !== "batch") return requestJobData(data);
  const parsed = batchJob.safeParse(data);
  return parsed.success ? { ok: true, value: parsed.data } : { ok: false, problem: problemOf(parsed.error, "") };
}

/** Where a request asked to be answered, read leniently (the data may be malformed): only string fields count. */
export function replyAddress(data: unknown): { replyTo?: string; requestId?: string } {
  if (typeof data !== "object" || data === null) return {};
  const { replyTo, requestId } = data as { replyTo?: unknown; requestId?: unknown };
  return { ...(typeof replyTo === "string" ? { replyTo } : {}), ...(typeof requestId === "string" ? { requestId } : {}) };
}

/** The requests a job's data carries, read leniently: a batch's, or the data itself. */
export function requestsOf(data: unknown): unknown[] {
  const requests = (data as Partial<BatchJob> | null | undefined)?.requests;
  return (data as { kind?: unknown } | null | undefined)?.kind === "batch" && Array.isArray(requests) ? requests : [data];
}
