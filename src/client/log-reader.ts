/**
 * Reads a deployment's log stream (see shared/log-stream.ts): the latest
 * lines since a time, for one replica or all, oldest first; and following
 * new lines as they arrive (XREAD BLOCK).
 */
import type { Redis } from "ioredis";
import { FlotillaError } from "../errors.js";
import type { Keys } from "../shared/keys.js";
import { parseLogEntry, type LogLine } from "../shared/log-stream.js";

export interface LogQuery {
  /** Only lines from this time on (ms). */
  sinceMs?: number;
  /** Only this replica's lines. */
  replica?: string;
  /** At most this many lines: the latest ones. @default 1000 */
  limit?: number;
}

export const DEFAULT_LOG_LIMIT = 1000;
const PAGE = 1000;

type StreamEntry = [id: string, fields: string[]];

/** `10m`, `30s`, `2h`, `1d`, `500ms`, an ISO date, or epoch ms, as epoch ms. */
export function parseSince(text: string, now = Date.now()): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(text.trim());
  if (match) {
    const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] as "ms" | "s" | "m" | "h" | "d"];
    return now - Number(match[1]) * unit;
  }
  if (/^\d{12,}$/.test(text.trim())) return Number(text.trim());
  const date = Date.parse(text);
  if (Number.isFinite(date)) return date;
  throw new FlotillaError("INVALID_REQUEST", `since: '${text}' is not a duration (10m, 30s, 2h, 1d), a date or epoch milliseconds`);
}

/**
 * The latest lines matching the query, oldest first. Hosts write in batches,
 * so the stream holds each host's lines in order but interleaves hosts by
 * when their batches arrived: the lines are sorted by the time they were read.
 */
export async function readLogs(redis: Redis, keys: Keys, deployment: string, query: LogQuery = {}): Promise<LogLine[]> {
  const key = keys.logs(deployment);
  const limit = query.limit ?? DEFAULT_LOG_LIMIT;
  const floor = query.sinceMs !== undefined ? String(Math.max(0, Math.floor(query.sinceMs))) : "-";
  const out: LogLine[] = [];
  let end = "+";
  // Newest first, a page at a time, until enough lines match (the stream is capped, so this ends).
  while (out.length < limit) {
    const page = (await redis.xrevrange(key, end, floor, "COUNT", PAGE)) as StreamEntry[];
    for (const [id, fields] of page) {
      const line = parseLogEntry(id, fields);
      if (matches(line, query)) out.push(line);
      if (out.length >= limit) break;
    }
    if (page.length < PAGE) break;
    end = `(${page[page.length - 1]![0]}`;
  }
  return out.reverse().sort((a, b) => a.at - b.at);
}

function matches(line: LogLine, query: LogQuery): boolean {
  return (query.replica === undefined || line.replica === query.replica) && (query.sinceMs === undefined || line.at >= query.sinceMs);
}

/** The id of the newest entry, or `0-0` for an empty stream: where a follow starts when nothing was printed. */
export async function lastLogId(redis: Redis, keys: Keys, deployment: string): Promise<string> {
  const last = (await redis.xrevrange(keys.logs(deployment), "+", "-", "COUNT", 1)) as StreamEntry[];
  return last[0]?.[0] ?? "0-0";
}

/**
 * Calls `onLines` with each batch of lines added after `afterId`, until the
 * signal aborts. Needs a connection of its own: XREAD BLOCK holds it.
 */
export async function followLogs(
  redis: Redis,
  keys: Keys,
  deployment: string,
  afterId: string,
  onLines: (lines: LogLine[]) => void,
  options: { replica?: string; signal: AbortSignal },
): Promise<void> {
  const key = keys.logs(deployment);
  let last = afterId;
  while (!options.signal.aborted) {
    const res = (await redis.xread("COUNT", PAGE, "BLOCK", 1000, "STREAMS", key, last)) as Array<[string, StreamEntry[]]> | null;
    const entries = res?.[0]?.[1] ?? [];
    if (entries.length === 0) continue;
    last = entries[entries.length - 1]![0];
    const lines = entries.map(([id, fields]) => parseLogEntry(id, fields)).filter((l) => options.replica === undefined || l.replica === options.replica);
    if (lines.length > 0) onLines(lines);
  }
}
