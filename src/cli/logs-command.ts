/** `flotilla logs NAME`: the lines of every replica of a deployment, on every host, oldest first; `-f` follows. */
import type { Redis } from "ioredis";
import { FlotillaError } from "../errors.js";
import { followLogs, lastLogId, parseSince, readLogs } from "../client/log-reader.js";
import type { Keys } from "../shared/keys.js";
import { closeRedis, createRedis } from "../shared/redis.js";
import { formatLogLine, type LogLine } from "../shared/log-stream.js";

export interface LogsOptions {
  replica?: string;
  follow: boolean;
  since?: string;
  json: boolean;
  limit: number;
  out: NodeJS.WritableStream;
  /** Where a follow opens a connection of its own (XREAD BLOCK holds it). */
  redisUrl: string;
  /** Ends a follow. @default SIGINT or SIGTERM */
  signal?: AbortSignal;
}

export async function logsCommand(redis: Redis, keys: Keys, name: string, o: LogsOptions): Promise<void> {
  const [exists, known] = await Promise.all([redis.exists(keys.logs(name)), redis.hexists(keys.deployments, name)]);
  if (exists === 0 && known === 0) throw new FlotillaError("NOT_FOUND", `no deployment named '${name}' and no logs of one in namespace '${keys.namespace}'`);
  const write = (lines: LogLine[]): void => {
    if (lines.length > 0) o.out.write(lines.map((l) => (o.json ? JSON.stringify(l) : formatLogLine(l))).join("\n") + "\n");
  };
  // Where a follow resumes is read before the history, so no line falls between the two.
  const startId = o.follow ? await lastLogId(redis, keys, name) : "0-0";
  const lines = await readLogs(redis, keys, name, {
    limit: o.limit,
    ...(o.since !== undefined ? { sinceMs: parseSince(o.since) } : {}),
    ...(o.replica !== undefined ? { replica: o.replica } : {}),
  });
  write(lines.filter((l) => !o.follow || compareIds(l.id, startId) <= 0));
  if (!o.follow) return;
  const blocking = createRedis(o.redisUrl, { name: "flotilla-cli-logs" });
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  const signal = o.signal ? AbortSignal.any([o.signal, stop.signal]) : stop.signal;
  try {
    await followLogs(blocking, keys, name, startId, write, { signal, ...(o.replica !== undefined ? { replica: o.replica } : {}) });
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await closeRedis(blocking);
  }
}

/** Orders stream ids (`ms-seq`). */
function compareIds(a: string, b: string): number {
  const [am = 0, as = 0] = a.split("-").map(Number);
  const [bm = 0, bs = 0] = b.split("-").map(Number);
  return am - bm || as - bs;
}
