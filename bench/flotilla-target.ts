/**
 * Flotilla as a user runs it: controller, router and one host (`--cpus 2`,
 * with an empty runtimeEnv cache of its own) as CLI processes in a fresh
 * namespace, and one replica of bench/app/hello.ts.
 * Stopping deletes the deployments first, so that the host (whose SIGTERM
 * migrates replicas and would wait for another host) has nothing to move.
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import { buildStatus, type StatusReport } from "../src/client/cluster-status.js";
import { applyDeployments, deleteDeployment, waitForRollout } from "../src/client/deployment-store.js";
import { readClusterState } from "../src/client/cluster-state.js";
import { Keys } from "../src/shared/keys.js";
import { parseDeploymentSpec } from "../src/spec/deployment-spec.js";
import { killIfStill, startProc, trackOrphan, type Proc } from "./proc.js";
import { START_TIMEOUT_MS, STOP_GRACE_MS, type Target } from "./target.js";
import { probeHttp, waitFor } from "./wait.js";

const CLI = fileURLToPath(new URL("../bin/flotilla.js", import.meta.url));
const APP_DIR = fileURLToPath(new URL("./app", import.meta.url));
/** Appears in every replica's command line (src/actors/replica-main). */
const REPLICA_MARK = "replica-main";

export interface FlotillaTarget extends Target {
  namespace: string;
  keys: Keys;
  redis: Redis;
  controller: Proc;
  host: Proc;
  router: Proc;
  /** Applying the first deployment until it was HEALTHY. */
  firstRolloutMs: number;
  /** Applies a deployment of `module` (default hello.ts) and waits until it is HEALTHY; resolves with the wall time it took. */
  deploy(name: string, module?: string): Promise<number>;
  /** Deletes this deployment when the target stops (for deployments applied by other code). */
  trackDeployment(name: string): void;
  status(): Promise<StatusReport>;
}

export async function startFlotilla(redisUrl: string): Promise<FlotillaTarget> {
  const namespace = `bench-${randomUUID().slice(0, 8)}`;
  const keys = new Keys(namespace);
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 1 });
  redis.on("error", () => undefined);
  const cli = (name: string, args: string[], level: string, env: Record<string, string> = {}): Proc =>
    startProc(name, process.execPath, [...(process.env.BENCH_CLI_EXEC_ARGV ?? "").split(" ").filter(Boolean), CLI, "--redis", redisUrl, "--namespace", namespace, "--app-dir", APP_DIR, ...args], {
      FLOTILLA_LOG_PRETTY: "0",
      // info is needed for "router listening" and the replica start lines; nothing logs per request at info.
      FLOTILLA_LOG_LEVEL: process.env.FLOTILLA_LOG_LEVEL ?? level,
      ...env,
    });
  // A cold runtimeEnv cache, and npm offline: the packages' dependencies are local tarballs.
  const cacheDir = mkdtempSync(path.join(os.tmpdir(), "flotilla-bench-cache-"));
  const controller = cli("flotilla-controller", ["controller", "--id", "c1"], "warn");
  const host = cli("flotilla-host", ["host", "--id", "h1", "--cpus", "2", "--cache-dir", cacheDir], "info", { npm_config_offline: "true", npm_config_update_notifier: "false" });
  const router = cli("flotilla-router", ["router", "--port", "0", "--bind", "127.0.0.1"], "info");
  const deployed: string[] = [];
  const status = async (): Promise<StatusReport> => buildStatus(namespace, await readClusterState(redis, keys));

  /** Replica pids from the host's "replica process started" lines. */
  const trackReplicas = (): number[] => {
    const pids = host.entries().flatMap((e) => (e.msg === "replica process started" && typeof e.replicaPid === "number" ? [e.replicaPid] : []));
    for (const pid of pids) trackOrphan(pid, REPLICA_MARK);
    return pids;
  };

  const deploy = async (name: string, module = "hello.ts"): Promise<number> => {
    const spec = parseDeploymentSpec({ name, import: module, numReplicas: 1, maxConcurrentQueries: 100, actorOptions: { numCpus: 0.25 } });
    const t0 = performance.now();
    deployed.push(name);
    const results = await applyDeployments(redis, keys, [spec]);
    try {
      await waitForRollout(redis, keys, results, { timeoutMs: START_TIMEOUT_MS, pollMs: 20 });
    } finally {
      trackReplicas();
    }
    return Math.round(performance.now() - t0);
  };

  const stop = async (): Promise<void> => {
    try {
      for (const name of deployed) await deleteDeployment(redis, keys, name);
      await waitFor("the replicas to drain after deleting the deployments", async () => (await status()).deployments.every((d) => d.replicas.length === 0) || undefined, {
        timeoutMs: 20_000,
        intervalMs: 200,
      });
    } catch (err) {
      process.stderr.write(`bench: flotilla did not drain cleanly (${err instanceof Error ? err.message : String(err)}); stopping anyway\n`);
    }
    for (const proc of [router, host, controller]) await proc.stop(STOP_GRACE_MS);
    for (const pid of trackReplicas()) {
      if (killIfStill(pid, REPLICA_MARK)) process.stderr.write(`bench: killed leftover replica process ${pid}\n`);
    }
    rmSync(cacheDir, { recursive: true, force: true });
    redis.disconnect();
  };

  try {
    const port = await router.waitForJson("to listen", (e) => (e.msg === "router listening" && typeof e.port === "number" ? e.port : undefined), START_TIMEOUT_MS);
    await waitFor("the host to register", async () => (await status()).hosts.some((h) => h.alive && h.id === "h1") || undefined, {
      timeoutMs: START_TIMEOUT_MS,
      describe: () => host.tail(),
    });
    const firstRolloutMs = await deploy("hello");
    const url = `http://127.0.0.1:${port}/hello`;
    await waitFor(`${url} to answer 200`, async () => (await probeHttp(url)) === 200, { timeoutMs: START_TIMEOUT_MS, intervalMs: 200 });
    const trackDeployment = (name: string): void => void deployed.push(name);
    const processes = async (): Promise<Record<string, number | undefined>> => ({
      router: router.pid,
      replica: (await status()).deployments.find((d) => d.name === "hello")?.replicas.find((r) => r.state === "running")?.pid ?? undefined,
      host: host.pid,
      controller: controller.pid,
    });
    return { name: "flotilla", url, usesRedis: true, keyPatterns: keys.patterns, processes, namespace, keys, redis, controller, host, router, firstRolloutMs, deploy, trackDeployment, status, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
