/** Starts the baselines, each as its own processes: raw node:http, the naive BullMQ front + worker, and a Moleculer front + service. */
import { randomUUID } from "node:crypto";
import { fileURLToPath } from "node:url";
import { startTsProc, type Proc } from "./proc.js";
import { START_TIMEOUT_MS, STOP_GRACE_MS, type Target } from "./target.js";
import { probeHttp, waitFor } from "./wait.js";

const file = (name: string): string => fileURLToPath(new URL(`./baselines/${name}`, import.meta.url));

const portOf = (proc: Proc): Promise<number> =>
  proc.waitForJson("to listen", (e) => (e.event === "listening" && typeof e.port === "number" ? e.port : undefined), START_TIMEOUT_MS);

async function answering(url: string): Promise<void> {
  await waitFor(`${url} to answer 200`, async () => (await probeHttp(url)) === 200, { timeoutMs: START_TIMEOUT_MS, intervalMs: 200 });
}

async function stopAllOf(procs: Proc[]): Promise<void> {
  await Promise.all(procs.map((p) => p.stop(STOP_GRACE_MS)));
}

/** Starts `procs` via `start`; if anything fails, stops what was started before rethrowing. */
async function guarded(procs: Proc[], start: () => Promise<Target>): Promise<Target> {
  try {
    return await start();
  } catch (err) {
    await stopAllOf(procs);
    throw err;
  }
}

export async function startRawHttp(): Promise<Target> {
  const server = startTsProc("raw-http", file("raw-http.ts"));
  return guarded([server], async () => {
    const url = `http://127.0.0.1:${await portOf(server)}/`;
    await answering(url);
    return { name: "raw-http", url, usesRedis: false, keyPatterns: [], processes: async () => ({ server: server.pid }), stop: () => stopAllOf([server]) };
  });
}

export async function startNaiveBullmq(redisUrl: string): Promise<Target> {
  const prefix = `bench-${randomUUID().slice(0, 8)}`;
  const env = { REDIS_URL: redisUrl, BENCH_QUEUE_PREFIX: prefix, BENCH_QUEUE: "hello" };
  const worker = startTsProc("bullmq-worker", file("bullmq-naive-worker.ts"), env);
  const front = startTsProc("bullmq-front", file("bullmq-naive-front.ts"), env);
  const procs = [front, worker];
  return guarded(procs, async () => {
    await worker.waitForJson("to be ready", (e) => (e.event === "ready" ? true : undefined), START_TIMEOUT_MS);
    const url = `http://127.0.0.1:${await portOf(front)}/`;
    await answering(url);
    return { name: "bullmq-naive", url, usesRedis: true, keyPatterns: [`${prefix}:*`], processes: async () => ({ front: front.pid, worker: worker.pid }), stop: () => stopAllOf(procs) };
  });
}

/** A node:http front calling a Moleculer service on another process over the Redis transporter (pub/sub: no keys). */
export async function startMoleculer(redisUrl: string): Promise<Target> {
  const env = { REDIS_URL: redisUrl, BENCH_MOLECULER_NAMESPACE: `bench-${randomUUID().slice(0, 8)}` };
  const service = startTsProc("moleculer-service", file("moleculer-service.ts"), env);
  const front = startTsProc("moleculer-front", file("moleculer-front.ts"), env);
  const procs = [front, service];
  return guarded(procs, async () => {
    await service.waitForJson("to be ready", (e) => (e.event === "ready" ? true : undefined), START_TIMEOUT_MS);
    const url = `http://127.0.0.1:${await portOf(front)}/`;
    await answering(url);
    return { name: "moleculer", url, usesRedis: true, keyPatterns: [], processes: async () => ({ front: front.pid, service: service.pid }), stop: () => stopAllOf(procs) };
  });
}
