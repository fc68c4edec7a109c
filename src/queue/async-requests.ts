/**
 * Async requests' records: one Redis hash per request, found by its id alone
 * (any router answers a poll), written by the requester (created, cancelled),
 * the replica (running, progress, finished) and the leader's janitor (failed
 * for good). Every change of status is one script, so a cancel and a finish
 * that race end in exactly one of them. A finished record expires after its
 * deployment's asyncResultTtlS.
 */
import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import type { Keys } from "../shared/keys.js";

export const ASYNC_STATUSES = ["queued", "running", "succeeded", "failed", "cancelled"] as const;
export type AsyncStatus = (typeof ASYNC_STATUSES)[number];
export const FINISHED: ReadonlySet<AsyncStatus> = new Set(["succeeded", "failed", "cancelled"]);

/** Ids are random UUIDs (122 random bits): whoever holds one may read the result. */
const ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

export function newAsyncId(): string {
  return randomUUID();
}

/** Whether `id` has the form of an async request id (anything else is answered 404 without a Redis read). */
export function isAsyncId(id: string): boolean {
  return ID_PATTERN.test(id);
}

/** The response a synchronous call would have got; `value` for handle calls, `error` when it failed. */
export interface AsyncResult {
  status: number;
  headers: Record<string, string>;
  body: string;
  base64?: boolean;
  value?: unknown;
  error?: { code: string; message: string; details?: Record<string, unknown> };
}

/** What a poll answers. Times are epoch ms; null until they happen. */
export interface AsyncRequestView {
  id: string;
  deployment: string;
  status: AsyncStatus;
  progress: unknown;
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  result: AsyncResult | null;
}

/** The largest progress value (as JSON) a handler may report. */
export const MAX_PROGRESS_BYTES = 4096;

/**
 * Lua: marks a request running, unless it was cancelled or finished (or is gone).
 * KEYS[1] = record; ARGV[1] = now (ms). Returns the status after the call, or false if there is no record.
 */
const START = `
local s = redis.call("HGET", KEYS[1], "status")
if not s then return false end
if s == "queued" or s == "running" then
  redis.call("HSET", KEYS[1], "status", "running", "startedAt", ARGV[1])
  return "running"
end
return s
`;

/** Lua: stores progress while running. KEYS[1] = record; ARGV[1] = progress JSON. Returns 1 if stored. */
const PROGRESS = `
if redis.call("HGET", KEYS[1], "status") ~= "running" then return 0 end
redis.call("HSET", KEYS[1], "progress", ARGV[1])
return 1
`;

/**
 * Lua: the end of a request, unless it already ended (a cancel wins over the
 * answer of the handler it aborted). Starts the result's TTL.
 * KEYS[1] = record; ARGV[1] = status; ARGV[2] = result JSON ("" for none);
 * ARGV[3] = now (ms). Returns the status before the call, or false if there
 * is no record.
 */
const FINISH = `
local s = redis.call("HGET", KEYS[1], "status")
if not s then return false end
if s ~= "queued" and s ~= "running" then return s end
redis.call("HSET", KEYS[1], "status", ARGV[1], "finishedAt", ARGV[3])
if ARGV[2] ~= "" then redis.call("HSET", KEYS[1], "result", ARGV[2]) end
local ttl = tonumber(redis.call("HGET", KEYS[1], "ttlS")) or 86400
redis.call("EXPIRE", KEYS[1], ttl)
return s
`;

function num(raw: string | undefined): number | null {
  return raw === undefined || raw === "" ? null : Number(raw);
}

function parsed<T>(raw: string | undefined): T | null {
  if (raw === undefined || raw === "") return null;
  try {
    return JSON.parse(raw) as T;
  } catch {
    return null;
  }
}

/** The progress value as stored: JSON of at most MAX_PROGRESS_BYTES; throws a message saying what is wrong. */
export function progressJson(value: unknown): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(value);
  } catch (err) {
    throw new Error(`progress(value): the value is not JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  if (json === undefined) throw new Error("progress(value): the value is not JSON (a number or a small JSON value is expected)");
  if (Buffer.byteLength(json) > MAX_PROGRESS_BYTES) throw new Error(`progress(value): ${Buffer.byteLength(json)} bytes of JSON, more than ${MAX_PROGRESS_BYTES}`);
  return json;
}

export class AsyncRecords {
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
  ) {}

  /** Creates a queued record. Until it finishes it has no TTL: a replica, a cancel or the janitor ends it. */
  async create(id: string, deployment: string, ttlS: number, now = Date.now()): Promise<void> {
    await this.redis.hset(this.keys.asyncRequest(id), { deployment, status: "queued", createdAt: String(now), ttlS: String(ttlS) });
    void this.count(deployment, "queued");
  }

  /** Notes the queue job carrying the request, so a cancel can withdraw it. */
  async setJob(id: string, jobId: string): Promise<void> {
    await this.redis.hset(this.keys.asyncRequest(id), "jobId", jobId);
  }

  /** Deletes a record whose job could not be added. */
  async delete(id: string): Promise<void> {
    await this.redis.del(this.keys.asyncRequest(id));
  }

  async read(id: string): Promise<(AsyncRequestView & { jobId?: string }) | undefined> {
    const h = await this.redis.hgetall(this.keys.asyncRequest(id));
    const status = h.status as AsyncStatus | undefined;
    if (status === undefined || !ASYNC_STATUSES.includes(status)) return undefined;
    return {
      id,
      deployment: h.deployment ?? "",
      status,
      progress: parsed(h.progress),
      createdAt: num(h.createdAt) ?? 0,
      startedAt: num(h.startedAt),
      finishedAt: num(h.finishedAt),
      result: parsed<AsyncResult>(h.result),
      ...(h.jobId ? { jobId: h.jobId } : {}),
    };
  }

  /** A replica takes the request: the status it is in now (`running` to go ahead), or undefined if the record is gone. */
  async start(id: string, now = Date.now()): Promise<AsyncStatus | undefined> {
    const s = (await this.redis.eval(START, 1, this.keys.asyncRequest(id), now)) as AsyncStatus | null;
    return s ?? undefined;
  }

  /** Stores a running request's progress (JSON checked by progressJson); false once it is no longer running. */
  async progress(id: string, json: string): Promise<boolean> {
    return (await this.redis.eval(PROGRESS, 1, this.keys.asyncRequest(id), json)) === 1;
  }

  /**
   * Ends a request that is queued or running: succeeded or failed with its
   * result, or cancelled. Returns the status it had before, or undefined if
   * the record is gone; it ended only if that status was queued or running.
   */
  async finish(id: string, deployment: string, status: Exclude<AsyncStatus, "queued" | "running">, result: AsyncResult | null, now = Date.now()): Promise<AsyncStatus | undefined> {
    const before = (await this.redis.eval(FINISH, 1, this.keys.asyncRequest(id), status, result ? JSON.stringify(result) : "", now)) as AsyncStatus | null;
    if (before === "queued" || before === "running") void this.count(deployment, status);
    return before ?? undefined;
  }

  /** Cancels: ends the request as cancelled and, if it was running, tells the replicas. Returns the status it had before. */
  async cancel(id: string, deployment: string, now = Date.now()): Promise<AsyncStatus | undefined> {
    const before = await this.finish(id, deployment, "cancelled", null, now);
    if (before === "running") await this.redis.publish(this.keys.asyncCancels, id);
    return before;
  }

  /** Counts a request reaching a status (best effort: a metric, not state). */
  private async count(deployment: string, status: AsyncStatus): Promise<void> {
    await this.redis.hincrby(this.keys.asyncCounts, `${deployment}|${status}`, 1).catch(() => undefined);
  }

  /** Every count: deployment → status → requests that reached it. */
  async counts(): Promise<Map<string, Record<AsyncStatus, number>>> {
    const out = new Map<string, Record<AsyncStatus, number>>();
    for (const [field, value] of Object.entries(await this.redis.hgetall(this.keys.asyncCounts))) {
      const bar = field.lastIndexOf("|");
      const deployment = field.slice(0, bar);
      const status = field.slice(bar + 1) as AsyncStatus;
      if (!ASYNC_STATUSES.includes(status)) continue;
      let entry = out.get(deployment);
      if (!entry) out.set(deployment, (entry = { queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 }));
      entry[status] = Number(value);
    }
    return out;
  }
}
