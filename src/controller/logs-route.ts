/** The admin API's `GET /api/deployments/<name>/logs?since=10m&replica=ID&limit=N`: what `flotilla logs` prints, as JSON. */
import type { Redis } from "ioredis";
import { FlotillaError } from "../errors.js";
import { DEFAULT_LOG_LIMIT, parseSince, readLogs } from "../client/log-reader.js";
import type { Keys } from "../shared/keys.js";
import type { LogLine } from "../shared/log-stream.js";

const MAX_LIMIT = 100_000;

export async function logsRoute(redis: Redis, keys: Keys, name: string, query: URLSearchParams): Promise<{ lines: LogLine[] }> {
  const [exists, known] = await Promise.all([redis.exists(keys.logs(name)), redis.hexists(keys.deployments, name)]);
  if (exists === 0 && known === 0) throw new FlotillaError("NOT_FOUND", `no deployment named '${name}' and no logs of one`);
  const limitText = query.get("limit");
  const limit = limitText === null ? DEFAULT_LOG_LIMIT : Number(limitText);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) throw new FlotillaError("INVALID_REQUEST", `limit: must be an integer from 1 to ${MAX_LIMIT}, got '${limitText}'`);
  const since = query.get("since");
  const replica = query.get("replica");
  const lines = await readLogs(redis, keys, name, { limit, ...(since !== null ? { sinceMs: parseSince(since) } : {}), ...(replica !== null ? { replica } : {}) });
  return { lines };
}
