/**
 * Requests per deployment, cluster-wide: what the dashboard and `status`
 * show as requests per second. Each requester (router, deployment handle)
 * counts the requests it queues in memory, by the second they were queued
 * in (its own clock), and adds the counts to Redis at most once a second,
 * in one round trip however many requests there were. A request counts
 * once, whether its job is its own or a batch job shared with others.
 *
 * In Redis, under the control-plane hash tag (so one pipeline works on a
 * Redis Cluster too): one hash per second, deployment → requests queued in
 * it, kept BUCKET_TTL_S; and the running totals, deployment → requests
 * queued in all. A reader sums the last RATE_WINDOW_S seconds that every
 * requester has written (by Redis's clock).
 */
import type { Redis } from "ioredis";
import type { Keys } from "../shared/keys.js";

/** How long counts wait in a requester before they go to Redis. */
export const FLUSH_MS = 1000;
/** The rate is the average over this many seconds. */
export const RATE_WINDOW_S = 5;
/**
 * Seconds read back: a second's counts are in Redis once every requester
 * flushed after it ended (up to FLUSH_MS later), with a second to spare for
 * timers late under load and clocks a little apart.
 */
const SETTLE_S = 2;
/** How long a second's counts are kept in Redis (and, while Redis is away, in a requester). */
const BUCKET_TTL_S = 120;

export class RequestCounter {
  /** Second (epoch s) → deployment → requests not yet written. */
  private pending = new Map<number, Map<string, number>>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private closed = false;

  /** `redis` is shared, not owned. */
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
  ) {}

  /** Counts `n` requests queued for `deployment` now. */
  add(deployment: string, n = 1, now = Date.now()): void {
    const second = Math.floor(now / 1000);
    let counts = this.pending.get(second);
    if (!counts) this.pending.set(second, (counts = new Map()));
    counts.set(deployment, (counts.get(deployment) ?? 0) + n);
    this.schedule();
  }

  private schedule(): void {
    if (this.timer || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, FLUSH_MS);
    this.timer.unref();
  }

  /** Writes every count not yet written, in one round trip. Counts that could not be written wait for the next flush. */
  flush(): Promise<void> {
    this.flushing ??= this.write().finally(() => {
      this.flushing = undefined;
      // Counts made while this write waited (or that it could not write) go with the next.
      if (this.pending.size > 0) this.schedule();
    });
    return this.flushing;
  }

  private async write(): Promise<void> {
    const taken = this.pending;
    if (taken.size === 0) return;
    this.pending = new Map();
    const pipeline = this.redis.pipeline();
    for (const [second, counts] of taken) {
      const bucket = this.keys.requestsAt(second);
      for (const [deployment, n] of counts) pipeline.hincrby(bucket, deployment, n).hincrby(this.keys.requestsTotal, deployment, n);
      pipeline.expire(bucket, BUCKET_TTL_S);
    }
    try {
      const results = (await pipeline.exec()) ?? [];
      if (results.some(([err]) => err)) throw new Error("a count was not written");
    } catch {
      // Redis is away (or refused part of it): keep the counts for the next flush, but none older than Redis would keep.
      const oldest = Math.floor(Date.now() / 1000) - BUCKET_TTL_S;
      for (const [second, counts] of taken) {
        if (second < oldest) continue;
        let kept = this.pending.get(second);
        if (!kept) this.pending.set(second, (kept = new Map()));
        for (const [deployment, n] of counts) kept.set(deployment, (kept.get(deployment) ?? 0) + n);
      }
    }
  }

  /** Stops the timer and writes what is left if Redis is there (a connection that waits through outages would hold the close). */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.redis.status !== "ready") return;
    await this.flushing;
    await this.flush();
  }
}

/** Per deployment: requests per second over the last RATE_WINDOW_S complete seconds, and requests queued in all. */
export interface RequestRates {
  perS: Map<string, number>;
  total: Map<string, number>;
}

/** The seconds the rate at `nowS` (Redis time, epoch s) averages over, oldest first. */
export function rateWindow(nowS: number): number[] {
  const last = Math.floor(nowS) - SETTLE_S - 1;
  return Array.from({ length: RATE_WINDOW_S }, (_, i) => last - RATE_WINDOW_S + 1 + i);
}

/** Sums the window's per-second hashes (as read, null for a missing one) into a rate per deployment. */
export function ratesFrom(buckets: ReadonlyArray<Record<string, string> | null | undefined>): Map<string, number> {
  const sums = new Map<string, number>();
  for (const bucket of buckets) {
    for (const [deployment, raw] of Object.entries(bucket ?? {})) {
      const n = Number(raw);
      if (Number.isFinite(n) && n > 0) sums.set(deployment, (sums.get(deployment) ?? 0) + n);
    }
  }
  return new Map([...sums].map(([deployment, n]) => [deployment, n / RATE_WINDOW_S]));
}

/**
 * Reads the rates and the totals in one round trip; `nowS` is Redis's clock
 * (epoch s, from TIME), read first when not given, since the reader's own
 * clock may be another machine's.
 */
export async function readRequestRates(redis: Redis, keys: Keys, nowS?: number): Promise<RequestRates> {
  const window = rateWindow(nowS ?? Number((await redis.time())[0]));
  const pipeline = redis.pipeline();
  for (const second of window) pipeline.hgetall(keys.requestsAt(second));
  pipeline.hgetall(keys.requestsTotal);
  const results = (await pipeline.exec()) ?? [];
  for (const [err] of results) if (err) throw err;
  const hashes = results.map(([, value]) => value as Record<string, string> | null);
  const total = new Map<string, number>();
  for (const [deployment, raw] of Object.entries(hashes[window.length] ?? {})) total.set(deployment, Number(raw) || 0);
  return { perS: ratesFrom(hashes.slice(0, window.length)), total };
}
