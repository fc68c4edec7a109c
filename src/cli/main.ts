/**
 * The `flotilla` command: every process (controller, router, host, or all of
 * them with `up`) and every operation (deploy, delete, status, history, rollback).
 */
import os from "node:os";
import path from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";
import { FlotillaError, errorMessage } from "../errors.js";
import type { ControllerOptionsInput } from "../controller/controller-options.js";
import { Keys } from "../shared/keys.js";
import { createLogger, redactUrl } from "../shared/logger.js";
import { closeRedis, createRedis, DEFAULT_REDIS_URL, defaultNamespace, defaultRedisUrl, waitReady } from "../shared/redis.js";
import { ROUTER_DEFAULTS } from "../router/router-defaults.js";
import { stopOnSignal } from "./signals.js";

// Each command imports what it runs when it runs: a router process never
// loads the controller or the table renderer, and `status` not the schema library.

interface GlobalOptions {
  redis: string;
  namespace: string;
  appDir: string;
}

function number(name: string, opts: { min?: number; integer?: boolean } = {}) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isFinite(n) || (opts.integer && !Number.isInteger(n)) || (opts.min !== undefined && n < opts.min)) {
      throw new InvalidArgumentError(`${name} must be ${opts.integer ? "an integer" : "a number"}${opts.min !== undefined ? ` >= ${opts.min}` : ""}, got '${value}'`);
    }
    return n;
  };
}

function jsonResources(value: string): Record<string, number> {
  try {
    const parsed = JSON.parse(value) as unknown;
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error("not an object");
    return parsed as Record<string, number>;
  } catch (err) {
    throw new InvalidArgumentError(`--resources must be a JSON object like '{"memoryGiB": 16}': ${errorMessage(err)}`);
  }
}

const program = new Command("flotilla")
  .description("Serve TypeScript deployments as replica processes on Redis + BullMQ")
  .addOption(new Option("--redis <url>", "Redis URL").env("REDIS_URL").default(DEFAULT_REDIS_URL))
  .addOption(new Option("--namespace <ns>", "cluster namespace (every Redis key lives under it)").env("FLOTILLA_NAMESPACE").default("flotilla"))
  .addOption(new Option("--app-dir <dir>", "directory holding the deployments' modules").env("FLOTILLA_APP_DIR").default(process.cwd(), "the current directory"))
  .showHelpAfterError();

/** `--cache-dir` and `--cache-max-gib`, for `host` and `up`. */
function cacheOptions(command: Command): Command {
  return command
    .addOption(new Option("--cache-dir <dir>", "where runtimeEnv packages are unpacked and their dependencies installed (default: $XDG_CACHE_HOME/flotilla or ~/.cache/flotilla)").env("FLOTILLA_CACHE_DIR"))
    .option("--cache-max-gib <n>", "evict unused runtimeEnv packages, least recently used first, above this size", number("--cache-max-gib", { min: 0.001 }), 10);
}

function adminOptions(opts: { adminPort: number; adminBind: string }): NonNullable<ControllerOptionsInput["admin"]> {
  const token = process.env.FLOTILLA_ADMIN_TOKEN;
  return { port: opts.adminPort, bind: opts.adminBind, ...(token ? { token } : {}) };
}

function globals(): GlobalOptions {
  const o = program.opts<GlobalOptions>();
  new Keys(o.namespace); // validates the namespace
  return { redis: o.redis ?? defaultRedisUrl(), namespace: o.namespace ?? defaultNamespace(), appDir: path.resolve(o.appDir) };
}

async function withRedis<T>(fn: (redis: ReturnType<typeof createRedis>, keys: Keys) => Promise<T>): Promise<T> {
  const g = globals();
  const redis = createRedis(g.redis, { name: "flotilla-cli" });
  try {
    await waitReady(redis, 5000).catch(() => {
      throw new FlotillaError("REDIS_UNAVAILABLE", `no Redis answers at ${redactUrl(g.redis)} (set --redis or REDIS_URL)`);
    });
    return await fn(redis, new Keys(g.namespace));
  } finally {
    await closeRedis(redis);
  }
}

cacheOptions(program.command("up"))
  .description("run a controller, a router and host(s) in one process: the laptop and CI default")
  .option("--config <file>", "deploy this YAML file once everything is up")
  .option("--port <port>", "router port", number("--port", { min: 0, integer: true }), ROUTER_DEFAULTS.port)
  .option("--bind <addr>", "router bind address", "127.0.0.1")
  .option("--hosts <n>", "host agents to run", number("--hosts", { min: 1, integer: true }), 1)
  .option("--cpus <n>", "CPUs each host declares", number("--cpus", { min: 0 }))
  .option("--gpus <n>", "GPUs each host declares", number("--gpus", { min: 0, integer: true }))
  .option("--prestart <n>", "replica processes each host keeps started ahead of need (0: none)", number("--prestart", { min: 0, integer: true }), 1)
  .addOption(new Option("--admin-port <port>", "admin API port (0: any free port)").env("FLOTILLA_ADMIN_PORT").default(8265).argParser(number("--admin-port", { min: 0, integer: true })))
  .option("--admin-bind <addr>", "admin API bind address", "127.0.0.1")
  .option("--metrics-port <port>", "serve the router's Prometheus metrics at GET /metrics on this port, on --bind (0: any free port; default: off)", number("--metrics-port", { min: 0, integer: true }))
  .action(async (opts: { config?: string; port: number; bind: string; hosts: number; cpus?: number; gpus?: number; prestart: number; adminPort: number; adminBind: string; metricsPort?: number; cacheDir?: string; cacheMaxGib: number }) => {
    const { runUp } = await import("./up-command.js");
    await runUp({ ...globals(), explicitRedis: program.getOptionValueSource("redis") !== "default", ...opts, admin: adminOptions(opts) });
  });

program
  .command("controller")
  .description("run a controller (one leader at a time; extra ones stand by)")
  .option("--id <name>", "controller id", `${os.hostname()}-${process.pid}`)
  .addOption(new Option("--admin-port <port>", "admin API port (0: any free port)").env("FLOTILLA_ADMIN_PORT").default(8265).argParser(number("--admin-port", { min: 0, integer: true })))
  .option("--admin-bind <addr>", "admin API bind address", "127.0.0.1")
  .action(async (opts: { id: string; adminPort: number; adminBind: string }) => {
    const [{ Controller }, { parseControllerOptions }] = await Promise.all([import("../controller/controller.js"), import("../controller/controller-options.js")]);
    const g = globals();
    const options = parseControllerOptions({ id: opts.id, redisUrl: g.redis, namespace: g.namespace, admin: adminOptions(opts) });
    const log = createLogger("controller", { controller: options.id });
    const controller = new Controller(options, log);
    await controller.start();
    stopOnSignal(log, () => controller.stop());
  });

program
  .command("router")
  .description("run an HTTP router")
  .option("--port <port>", `port to listen on (default: ${ROUTER_DEFAULTS.port})`, number("--port", { min: 0, integer: true }))
  .option("--bind <addr>", `address to listen on (default: ${ROUTER_DEFAULTS.bind})`)
  .option("--id <name>", "router id")
  .option("--request-timeout <s>", `answer 504 after this many seconds (default: ${ROUTER_DEFAULTS.requestTimeoutS})`, number("--request-timeout", { min: 0.001 }))
  .option("--max-body-bytes <n>", `larger request bodies get 413 (default: ${ROUTER_DEFAULTS.maxBodyBytes})`, number("--max-body-bytes", { min: 0, integer: true }))
  .option("--metrics-port <port>", "serve Prometheus metrics at GET /metrics on this port, on --bind (0: any free port; default: off)", number("--metrics-port", { min: 0, integer: true }))
  .action(async (opts: { port?: number; bind?: string; id?: string; requestTimeout?: number; maxBodyBytes?: number; metricsPort?: number }) => {
    const [{ Router }, { parseRouterOptions }] = await Promise.all([import("../router/router.js"), import("../router/router-options.js")]);
    const g = globals();
    const options = parseRouterOptions({
      redisUrl: g.redis,
      namespace: g.namespace,
      ...(opts.port !== undefined ? { port: opts.port } : {}),
      ...(opts.bind !== undefined ? { bind: opts.bind } : {}),
      ...(opts.requestTimeout !== undefined ? { requestTimeoutS: opts.requestTimeout } : {}),
      ...(opts.maxBodyBytes !== undefined ? { maxBodyBytes: opts.maxBodyBytes } : {}),
      ...(opts.id !== undefined ? { id: opts.id } : {}),
      ...(opts.metricsPort !== undefined ? { metricsPort: opts.metricsPort } : {}),
    });
    const log = createLogger("router");
    const router = new Router(options, log);
    await router.start();
    stopOnSignal(log, () => router.stop());
  });

cacheOptions(program.command("host"))
  .description("run a host agent that runs the replicas assigned to it")
  .option("--id <name>", "host id (default: hostname-pid)")
  .option("--cpus <n>", "CPUs to offer (default: this machine's cores)", number("--cpus", { min: 0 }))
  .option("--gpus <n>", "GPUs to offer (default: what nvidia-smi -L lists)", number("--gpus", { min: 0, integer: true }))
  .option("--resources <json>", "custom resources, e.g. '{\"memoryGiB\": 16}'", jsonResources)
  .option("--heartbeat-timeout <s>", "declared dead after this many seconds without a heartbeat", number("--heartbeat-timeout", { min: 1 }), 10)
  .option("--prestart <n>", "replica processes to keep started ahead of need, so a new replica skips Node's start-up (0: none)", number("--prestart", { min: 0, integer: true }), 1)
  .option("--memory-mib <n>", "memory replicas may reserve with actorOptions.memoryMiB (default: this machine's total)", number("--memory-mib", { min: 0 }))
  .option("--log-max-lines <n>", "lines each deployment's log stream keeps", number("--log-max-lines", { min: 1, integer: true }), 10_000)
  .action(async (opts: { id?: string; cpus?: number; gpus?: number; resources?: Record<string, number>; heartbeatTimeout: number; prestart: number; memoryMib?: number; logMaxLines: number; cacheDir?: string; cacheMaxGib: number }) => {
    const [{ HostAgent }, { parseHostOptions }] = await Promise.all([import("../host/host-agent.js"), import("../host/host-options.js")]);
    const g = globals();
    const hostOptions = parseHostOptions({
      redisUrl: g.redis,
      namespace: g.namespace,
      appDir: g.appDir,
      heartbeatTimeoutS: opts.heartbeatTimeout,
      prestart: opts.prestart,
      logMaxLines: opts.logMaxLines,
      ...(opts.memoryMib !== undefined ? { memoryMiB: opts.memoryMib } : {}),
      cacheMaxGiB: opts.cacheMaxGib,
      ...(opts.cacheDir !== undefined ? { cacheDir: opts.cacheDir } : {}),
      ...(opts.id !== undefined ? { id: opts.id } : {}),
      ...(opts.cpus !== undefined ? { cpus: opts.cpus } : {}),
      ...(opts.gpus !== undefined ? { gpus: opts.gpus } : {}),
      ...(opts.resources !== undefined ? { resources: opts.resources } : {}),
    });
    const log = createLogger("host", { host: hostOptions.id });
    const host = new HostAgent(hostOptions, log);
    await host.start();
    stopOnSignal(log, () => host.stop("migrate"));
  });

program
  .command("deploy")
  .description("apply a YAML file of deployments (`deployments: [spec, ...]`) and wait for the rollout")
  .argument("<file>", "the deploy file")
  .option("--no-wait", "return once the specs are stored")
  .option("--timeout <s>", "fail if the rollout is not done by then", number("--timeout", { min: 1 }), 300)
  .option("--max-package-mib <n>", "refuse a runtimeEnv package larger than this, before uploading anything", number("--max-package-mib", { min: 0.001 }), 100)
  .action(async (file: string, opts: { wait: boolean; timeout: number; maxPackageMib: number }) => {
    const { deployCommand, readDeployFile } = await import("./deploy-command.js");
    const specs = await readDeployFile(file);
    const baseDir = path.dirname(path.resolve(file));
    await withRedis((redis, keys) => deployCommand(redis, keys, specs, { wait: opts.wait, timeoutS: opts.timeout, out: process.stdout, baseDir, maxPackageMiB: opts.maxPackageMib }));
  });

program
  .command("delete")
  .description("delete a deployment: its replicas drain, its queued requests are answered 404")
  .argument("<name>", "deployment name")
  .action(async (name: string) => {
    const { deleteDeployment } = await import("../client/deployment-store.js");
    const removed = await withRedis((redis, keys) => deleteDeployment(redis, keys, name));
    if (!removed) throw new FlotillaError("NOT_FOUND", `no deployment named '${name}' in namespace '${globals().namespace}'`);
    process.stdout.write(`${name}: deleted\n`);
  });

program
  .command("history")
  .description("list a deployment's revisions: when, from where, which version, and how each ended")
  .argument("<name>", "deployment name")
  .option("--json", "print JSON")
  .action(async (name: string, opts: { json?: boolean }) => {
    const { historyCommand } = await import("./history-command.js");
    await withRedis((redis, keys) => historyCommand(redis, keys, name, { json: opts.json === true, out: process.stdout }));
  });

program
  .command("rollback")
  .description("apply an earlier revision again (default: the last one that rolled out before the current) and wait for the rollout")
  .argument("<name>", "deployment name")
  .option("--to <rev>", "the revision to return to", number("--to", { min: 1, integer: true }))
  .option("--no-wait", "return once the spec is stored")
  .option("--timeout <s>", "fail if the rollout is not done by then", number("--timeout", { min: 1 }), 300)
  .action(async (name: string, opts: { to?: number; wait: boolean; timeout: number }) => {
    const { rollbackCommand } = await import("./history-command.js");
    await withRedis((redis, keys) => rollbackCommand(redis, keys, name, { ...(opts.to !== undefined ? { to: opts.to } : {}), wait: opts.wait, timeoutS: opts.timeout, out: process.stdout }));
  });

program
  .command("status")
  .description("show deployments, replicas, hosts and controllers")
  .option("--json", "print JSON")
  .action(async (opts: { json?: boolean }) => {
    const [{ buildStatus }, { readClusterState }, { renderStatus }] = await Promise.all([
      import("../client/cluster-status.js"),
      import("../client/cluster-state.js"),
      import("./status-command.js"),
    ]);
    const g = globals();
    const report = await withRedis(async (redis, keys) => buildStatus(g.namespace, await readClusterState(redis, keys)));
    process.stdout.write(opts.json ? `${JSON.stringify(report, null, 2)}\n` : `${renderStatus(report)}\n`);
  });

program
  .command("logs")
  .description("print the output of every replica of a deployment, on every host, oldest first")
  .argument("<name>", "deployment name")
  .option("--replica <id>", "only this replica's lines")
  .option("-f, --follow", "then print new lines as they come, until Ctrl-C")
  .option("--since <when>", "only lines since then: 10m, 30s, 2h, 1d, or a date")
  .option("--limit <n>", "at most this many lines of history (the latest)", number("--limit", { min: 1, integer: true }), 1000)
  .option("--json", "one JSON object per line")
  .action(async (name: string, opts: { replica?: string; follow?: boolean; since?: string; limit: number; json?: boolean }) => {
    const { logsCommand } = await import("./logs-command.js");
    const g = globals();
    await withRedis((redis, keys) =>
      logsCommand(redis, keys, name, { ...opts, follow: opts.follow === true, json: opts.json === true, out: process.stdout, redisUrl: g.redis }),
    );
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  const message = err instanceof FlotillaError ? `error ${err.code}: ${err.message}` : `error: ${errorMessage(err)}`;
  process.stderr.write(`${message}\n`);
  process.exit(1);
});
