/**
 * Health events in Redis: hosts count failed health checks and replacements
 * (a hash they HINCRBY) and keep the latest replacements (a capped list);
 * `status` and the controller's metrics read both.
 */
import type { Redis } from "ioredis";
import type { Keys } from "./keys.js";
import type { ReplacementEvent, ReplacementKind } from "./records.js";

/** Replacements kept in the list, cluster-wide. */
export const RECENT_REPLACEMENTS = 100;

export const REPLACEMENT_KINDS: readonly ReplacementKind[] = ["health", "liveness", "memory"];

export interface HealthCounts {
  checkFailures: number;
  replacements: Record<ReplacementKind, number>;
}

export interface HealthEvents {
  /** Per deployment. */
  counts: Map<string, HealthCounts>;
  /** Newest first. */
  recent: ReplacementEvent[];
}

const CHECK_FAILURES = "check_failures";
const replacedField = (kind: ReplacementKind): string => `replaced_${kind}`;

export async function countHealthCheckFailure(redis: Redis, keys: Keys, deployment: string): Promise<void> {
  await redis.hincrby(keys.healthCounters, `${deployment}|${CHECK_FAILURES}`, 1);
}

export async function recordReplacement(redis: Redis, keys: Keys, event: ReplacementEvent): Promise<void> {
  await redis
    .multi()
    .hincrby(keys.healthCounters, `${event.deployment}|${replacedField(event.kind)}`, 1)
    .lpush(keys.replacements, JSON.stringify(event))
    .ltrim(keys.replacements, 0, RECENT_REPLACEMENTS - 1)
    .exec();
}

function parseHealthEvents(counters: unknown, recent: unknown): HealthEvents {
  const counts = new Map<string, HealthCounts>();
  const raw = counters && typeof counters === "object" ? (counters as Record<string, string>) : {};
  for (const [field, value] of Object.entries(raw)) {
    const bar = field.lastIndexOf("|");
    if (bar < 0) continue;
    const deployment = field.slice(0, bar);
    const counter = field.slice(bar + 1);
    const n = Number(value) || 0;
    let c = counts.get(deployment);
    if (!c) {
      c = { checkFailures: 0, replacements: { health: 0, liveness: 0, memory: 0 } };
      counts.set(deployment, c);
    }
    if (counter === CHECK_FAILURES) c.checkFailures = n;
    for (const kind of REPLACEMENT_KINDS) if (counter === replacedField(kind)) c.replacements[kind] = n;
  }
  const events: ReplacementEvent[] = [];
  for (const item of Array.isArray(recent) ? (recent as unknown[]) : []) {
    try {
      events.push(JSON.parse(String(item)) as ReplacementEvent);
    } catch {
      // a malformed entry is skipped, never fatal to status
    }
  }
  return { counts, recent: events };
}

/** The counters and the latest replacements, in one round trip. */
export async function readHealthEvents(redis: Redis, keys: Keys): Promise<HealthEvents> {
  const res = (await redis.pipeline().hgetall(keys.healthCounters).lrange(keys.replacements, 0, RECENT_REPLACEMENTS - 1).exec()) ?? [];
  for (const [err] of res) if (err) throw err;
  return parseHealthEvents(res[0]?.[1], res[1]?.[1]);
}
