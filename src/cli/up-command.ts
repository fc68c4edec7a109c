/**
 * `flotilla up`: a whole cluster in one process (controller, router, host
 * agents; replicas are still their own processes). Finds or starts a Redis,
 * optionally deploys a file, and on Ctrl-C drains everything and exits.
 */
import os from "node:os";
import path from "node:path";
import { FlotillaError } from "../errors.js";
import { Controller } from "../controller/controller.js";
import { parseControllerOptions, type ControllerOptionsInput } from "../controller/controller-options.js";
import { HostAgent } from "../host/host-agent.js";
import { HostPackageCache } from "../host/host-package-cache.js";
import { parseHostOptions } from "../host/host-options.js";
import { Router } from "../router/router.js";
import { parseRouterOptions } from "../router/router-options.js";
import { Keys } from "../shared/keys.js";
import { createLogger, redactUrl } from "../shared/logger.js";
import { closeRedis, createRedis, DEFAULT_REDIS_URL, parseClusterUrl } from "../shared/redis.js";
import { deployCommand, readDeployFile } from "./deploy-command.js";
import { hasRedisServer, redisAnswers, startPrivateRedis, type PrivateRedis } from "./private-redis.js";
import { stopOnSignal } from "./signals.js";

export interface UpOptions {
  redis: string;
  explicitRedis: boolean;
  namespace: string;
  appDir: string;
  config?: string;
  port: number;
  bind: string;
  hosts: number;
  cpus?: number;
  gpus?: number;
  prestart: number;
  /** The hosts' runtimeEnv cache (one, shared by every host of this process). @default the user's cache directory */
  cacheDir?: string;
  /** @default 10 */
  cacheMaxGib?: number;
  admin: NonNullable<ControllerOptionsInput["admin"]>;
  /** The router's metrics port; omitted: no metrics server. */
  metricsPort?: number;
}

export async function runUp(o: UpOptions): Promise<void> {
  const log = createLogger("up");
  const specs = o.config ? await readDeployFile(o.config) : [];
  const controllerOptions = parseControllerOptions({ id: `${os.hostname()}-${process.pid}-controller`, redisUrl: o.redis, namespace: o.namespace, admin: o.admin });
  let redisUrl = o.redis;
  let privateRedis: PrivateRedis | undefined;
  if (!parseClusterUrl(redisUrl) && !(await redisAnswers(redisUrl))) {
    if (o.explicitRedis || redisUrl !== DEFAULT_REDIS_URL) {
      throw new FlotillaError("REDIS_UNAVAILABLE", `no Redis answers at ${redactUrl(redisUrl)}; start it, or leave --redis/REDIS_URL unset to let 'up' start a private one`);
    }
    if (!hasRedisServer()) {
      throw new FlotillaError(
        "REDIS_UNAVAILABLE",
        `no Redis answers at ${DEFAULT_REDIS_URL} and redis-server is not installed. Start one with 'docker run -p 6379:6379 redis:7' or install it ('apt-get install redis-server' / 'brew install redis'), or point --redis at yours`,
      );
    }
    privateRedis = await startPrivateRedis();
    redisUrl = privateRedis.url;
    log.info({ redis: redisUrl }, "no Redis at the default URL: started a private redis-server for this run");
  }

  const routerOptions = parseRouterOptions({
    redisUrl,
    namespace: o.namespace,
    port: o.port,
    bind: o.bind,
    ...(o.metricsPort !== undefined ? { metricsPort: o.metricsPort } : {}),
  });
  const controller = new Controller({ ...controllerOptions, redisUrl }, createLogger("controller"));
  await controller.start();
  const hosts: HostAgent[] = [];
  let packages: HostPackageCache | undefined;
  for (let i = 0; i < o.hosts; i++) {
    const options = parseHostOptions({
      id: `${os.hostname().replace(/[^A-Za-z0-9_.-]/g, "-").slice(0, 40)}-${process.pid}-${i + 1}`,
      redisUrl,
      namespace: o.namespace,
      appDir: o.appDir,
      prestart: o.prestart,
      ...(o.cacheDir !== undefined ? { cacheDir: o.cacheDir } : {}),
      ...(o.cacheMaxGib !== undefined ? { cacheMaxGiB: o.cacheMaxGib } : {}),
      ...(o.cpus !== undefined ? { cpus: o.cpus } : {}),
      ...(o.gpus !== undefined ? { gpus: o.gpus } : {}),
    });
    // One cache for the process: its hosts share packages, installs and what is in use.
    packages ??= new HostPackageCache(options, createLogger("host"));
    hosts.push(new HostAgent(options, createLogger("host", { host: options.id }), Date.now, packages));
  }
  await Promise.all(hosts.map((h) => h.start()));
  const router = new Router(routerOptions, createLogger("router"));
  const port = await router.start();

  stopOnSignal(log, async () => {
    await router.stop();
    // The whole cluster is stopping: the controller goes before the hosts, or it would see their replicas
    // leave and schedule replacements for them.
    await controller.stop();
    await Promise.all(hosts.map((h) => h.stop("drain")));
    await privateRedis?.stop();
  });
  const metrics = router.metricsPort !== undefined ? `, router metrics http://${o.bind}:${router.metricsPort}/metrics` : "";
  process.stdout.write(
    `flotilla is up: http://${o.bind}:${port} (namespace ${o.namespace}, redis ${redactUrl(redisUrl)}, admin API http://${o.admin.bind}:${controller.adminPort}${metrics}); Ctrl-C to stop\n`,
  );

  if (specs.length > 0) {
    const redis = createRedis(redisUrl, { name: "flotilla-up-deploy" });
    try {
      await deployCommand(redis, new Keys(o.namespace), specs, { wait: true, timeoutS: 300, out: process.stdout, baseDir: path.dirname(path.resolve(o.config ?? "flotilla.yaml")) });
    } catch (err) {
      log.error({ err: err instanceof Error ? err.message : String(err) }, "the deploy file did not roll out; the cluster keeps running");
    } finally {
      await closeRedis(redis);
    }
  }
}
