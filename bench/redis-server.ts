/**
 * The Redis the benchmark runs against. By default a private `redis-server` on
 * a free port, so that commandstats and CPU counters see only the target under
 * test; BENCH_REDIS_URL uses an existing one instead (its counters then include
 * whatever else uses it, and CONFIG RESETSTAT is not sent to it).
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import { startProc } from "./proc.js";
import { waitFor } from "./wait.js";
import { freePort } from "../src/cli/private-redis.js";

export interface BenchRedis {
  url: string;
  /** True when the benchmark started this server and nothing else uses it. */
  private: boolean;
  version: string;
  client: Redis;
  stop(): Promise<void>;
}

function connect(url: string): Redis {
  const redis = new Redis(url, { maxRetriesPerRequest: 1, connectTimeout: 2000 });
  redis.on("error", () => undefined);
  return redis;
}

async function versionOf(redis: Redis): Promise<string> {
  const info = await redis.info("server");
  return /redis_version:(\S+)/.exec(info)?.[1] ?? "unknown";
}

export async function openBenchRedis(): Promise<BenchRedis> {
  const external = process.env.BENCH_REDIS_URL;
  if (external) {
    const client = connect(external);
    await waitFor(`Redis at ${external}`, async () => (await client.ping()) === "PONG", { timeoutMs: 5000 });
    return { url: external, private: false, version: await versionOf(client), client, stop: async () => client.disconnect() };
  }
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), "flotilla-bench-redis-"));
  const proc = startProc("redis-server", "redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, "--loglevel", "warning"]);
  const url = `redis://127.0.0.1:${port}`;
  const client = connect(url);
  const stop = async (): Promise<void> => {
    client.disconnect();
    await proc.stop(5000);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(
      `redis-server on port ${port} (is redis-server installed? or set BENCH_REDIS_URL)`,
      async () => {
        if (!proc.running) throw new Error(`redis-server exited: ${proc.tail()}`);
        return (await client.ping()) === "PONG";
      },
      { timeoutMs: 5000, describe: () => proc.tail() },
    );
    return { url, private: true, version: await versionOf(client), client, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Deletes every key matching the patterns (SCAN MATCH + DEL). Returns how many went and a few of their names. */
export async function deleteKeys(redis: Redis, patterns: readonly string[]): Promise<{ deleted: number; sample: string[] }> {
  let deleted = 0;
  const sample: string[] = [];
  for (const pattern of patterns) {
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000);
      cursor = next;
      if (keys.length > 0) deleted += await redis.del(...keys);
      sample.push(...keys.slice(0, Math.max(0, 5 - sample.length)));
    } while (cursor !== "0");
  }
  return { deleted, sample };
}
