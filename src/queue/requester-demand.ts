/**
 * Requests that requesters (routers, deployment handles) are waiting on, per
 * deployment: the autoscaler's count of demand in requests, whether they wait
 * in one job each or share a batch job, and whether they wait in the queue or
 * inside a replica for a free slot.
 *
 * Each requester keeps its own count and writes it every REPORT_MS into a hash
 * next to the deployment's queue (same hash tag): field = requester id,
 * value = `<count>:<Redis time in s>`. A count back at 0 deletes the field. A
 * field not refreshed for STALE_S (its requester died) is ignored by readers,
 * and deleted by the leader controller's sweep unless its requester wrote it
 * again meanwhile. Reading never writes.
 */
import type { Redis } from "ioredis";
import type { Keys } from "../shared/keys.js";
import { LuaScript } from "../shared/lua-script.js";
import { QueueKeys } from "./queue-keys.js";

/** How often a requester writes its counts. */
export const REPORT_MS = 500;
/** A count older than this is a dead requester's. */
export const STALE_S = 5;
/** The whole hash goes when no requester has written for this long. */
const HASH_TTL_MS = 60_000;

export const requestersKey = (keys: Keys, deployment: string): string => new QueueKeys(keys.namespace).of(deployment).requesters;

/**
 * Lua: KEYS[1] = requesters hash; ARGV[1] = requester id; ARGV[2] = count; ARGV[3] = hash TTL in ms.
 * Stamps the count with Redis's clock, so requesters and readers on other machines need not agree on time.
 * Returns 1 when it wrote the count, or the number of fields deleted (0 or 1) for a count of 0.
 */
const REPORT = `
if ARGV[2] == "0" then return redis.call("HDEL", KEYS[1], ARGV[1]) end
redis.call("HSET", KEYS[1], ARGV[1], ARGV[2] .. ":" .. redis.call("TIME")[1])
redis.call("PEXPIRE", KEYS[1], ARGV[3])
return 1
`;

/** Sums the live counts of a requesters hash read at `nowS` (Redis time); lists the stale fields with the values read. */
export function sumRequested(hash: Record<string, string> | null | undefined, nowS: number): { requested: number; stale: Array<[field: string, value: string]> } {
  let requested = 0;
  const stale: Array<[string, string]> = [];
  for (const [field, value] of Object.entries(hash ?? {})) {
    const [count, at] = value.split(":").map(Number);
    if (!Number.isFinite(count) || !Number.isFinite(at) || nowS - (at as number) > STALE_S) stale.push([field, value]);
    else requested += Math.max(0, count as number);
  }
  return { requested, stale };
}

/**
 * Lua: KEYS[1] = requesters hash; ARGV = field, value, field, value, ...
 * Deletes each field that still holds the value read, so that a requester
 * that wrote again since (it was only slow) keeps its count. Returns the
 * number of fields deleted.
 */
const DELETE_STALE = new LuaScript(`
local n = 0
for i = 1, #ARGV, 2 do
  if redis.call("HGET", KEYS[1], ARGV[i]) == ARGV[i + 1] then n = n + redis.call("HDEL", KEYS[1], ARGV[i]) end
end
return n
`);

/** Deletes stale requester counts of a deployment as read (see sumRequested); resolves with how many went. */
export async function deleteStale(redis: Redis, keys: Keys, deployment: string, stale: ReadonlyArray<readonly [string, string]>): Promise<number> {
  if (stale.length === 0) return 0;
  return Number(await DELETE_STALE.run(redis, [requestersKey(keys, deployment)], stale.flat()));
}

/** One requester's counts, kept in memory per request and written to Redis every REPORT_MS. */
export class DemandReporter {
  private readonly counts = new Map<string, number>();
  /** Deployments with a field in Redis: a count of 0 must still be written (as a delete) once. */
  private readonly reported = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly requesterId: string,
  ) {}

  /** A request to `deployment` started (+1) or ended (-1). */
  change(deployment: string, delta: number): void {
    const n = (this.counts.get(deployment) ?? 0) + delta;
    if (n > 0) this.counts.set(deployment, n);
    else this.counts.delete(deployment);
    if (!this.timer) {
      this.timer = setInterval(() => void this.write(), REPORT_MS);
      this.timer.unref();
    }
  }

  /** Writes every count that is not 0, and deletes the fields of counts back at 0. Errors wait for the next round. */
  write(): Promise<void> {
    if (this.writing || this.redis.status !== "ready") return this.writing ?? Promise.resolve();
    this.writing = this.writeNow().finally(() => (this.writing = undefined));
    return this.writing;
  }

  private async writeNow(): Promise<void> {
    try {
      const names = new Set([...this.counts.keys(), ...this.reported]);
      if (names.size === 0) {
        clearInterval(this.timer);
        this.timer = undefined;
        return;
      }
      await Promise.all(
        [...names].map(async (deployment) => {
          const count = this.counts.get(deployment) ?? 0;
          await this.redis.eval(REPORT, 1, requestersKey(this.keys, deployment), this.requesterId, count, HASH_TTL_MS);
          if (count > 0) this.reported.add(deployment);
          else if (!this.counts.has(deployment)) this.reported.delete(deployment);
        }),
      );
    } catch {
      // Redis is unreachable: the next round writes the counts as they are then.
    }
  }

  /** Stops writing and deletes this requester's fields (best effort). */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    this.counts.clear();
    await this.writing;
    if (this.redis.status !== "ready") return;
    await Promise.all([...this.reported].map((d) => this.redis.hdel(requestersKey(this.keys, d), this.requesterId).catch(() => undefined)));
    this.reported.clear();
  }
}
