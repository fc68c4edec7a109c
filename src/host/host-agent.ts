/**
 * A host agent: declares this machine's capacity, heartbeats, and runs the
 * replica processes the controller assigns to it. Level-triggered: every tick
 * reads the assignments and records in Redis, asks planHost (host-plan.ts)
 * what to do with the local processes, and does it.
 */
import os from "node:os";
import path from "node:path";
import type { Redis } from "ioredis";
import { errorMessage } from "../errors.js";
import { Keys } from "../shared/keys.js";
import type { Logger } from "../shared/logger.js";
import type { DeploymentRecord, HostInfo, ReplicaAssignment, ReplicaStatus } from "../shared/records.js";
import { createRedis, closeRedis } from "../shared/redis.js";
import { settledWithin } from "../shared/settled-within.js";
import { releaseWorkerLocks } from "../queue/worker-locks.js";
import { Ticker } from "../shared/ticker.js";
import { ReplicaProcess } from "./replica-process.js";
import { PrestartedProcess, processLauncher } from "./prestarted-process.js";
import type { ReplicaLauncher } from "./replica-launcher.js";
import { PackageStore } from "../runtime-env/package-store.js";
import { HostPackageCache } from "./host-package-cache.js";
import { RuntimeEnvPreparer } from "./runtime-env-preparer.js";
import { handlerLoader, type HandlerLoader } from "../actors/module-scope.js";
import { parseImportRef } from "../spec/import-ref.js";
import type { HostOptions } from "./host-options.js";
import { planHost, PRESTART_BACKOFF_MS, type HostAction, type HostLocal } from "./host-plan.js";
import { replicaConfig, replicaEnv } from "./replica-launch.js";
import { LogShipper } from "./log-shipper.js";
import { countHealthCheckFailure, recordReplacement } from "../shared/health-events.js";
import { HostView } from "./host-view.js";
import { StatusWriter } from "./status-writer.js";

const TICK_MS = 1000;

export class HostAgent {
  private readonly keys: Keys;
  private readonly redis: Redis;
  private readonly sub: Redis;
  private readonly ticker = new Ticker(() => this.tick(), () => TICK_MS);
  private readonly view: HostView;
  private readonly statusWriter: StatusWriter;
  private readonly procs = new Map<string, ReplicaProcess>();
  /** Replica ids that ran here and ended: never started again under the same id. */
  private readonly finished = new Map<string, ReplicaStatus>();
  private flushScheduled = false;
  private stopping = false;
  private draining = false;
  private readonly startedAt: number;
  /** When the last replica here ended (or the host started empty). */
  private emptySince: number;
  private emptied: (() => void) | undefined;
  /** Processes started ahead of need (`prestart`), waiting to become replicas. */
  private readonly prestarted = new Set<PrestartedProcess>();
  /** When a prestarted process last ended before it was ready (prestarting pauses for a while). */
  private prestartEarlyExitAt: number | null = null;
  /** The loader the next prestarted process readies: the last handler's, or at first the app directory's TypeScript scope. */
  private lastHandlerLoader: HandlerLoader;
  /** The replicas' output lines, on their way to their deployments' log streams. */
  private readonly logs: LogShipper;
  /** The runtimeEnv cache: this process's one (shared by the agents of `up --hosts N`), or the agent's own. */
  private readonly packages: HostPackageCache;
  private readonly preparer: RuntimeEnvPreparer;

  /**
   * @param now the clock every decision reads @default Date.now
   * @param packages the process's runtimeEnv cache @default one of its own, from options.cacheDir
   * @param launcher starts replica processes @default OS processes (the fleet simulation passes in-memory ones)
   */
  constructor(
    readonly options: HostOptions,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
    packages?: HostPackageCache,
    private readonly launcher: ReplicaLauncher = processLauncher,
  ) {
    this.keys = new Keys(options.namespace);
    this.startedAt = now();
    this.emptySince = this.startedAt;
    this.lastHandlerLoader = handlerLoader(path.join(options.appDir, "handler.ts"));
    this.redis = createRedis(options.redisUrl, { name: `flotilla-host-${options.id}` });
    this.sub = createRedis(options.redisUrl, { name: `flotilla-host-${options.id}-sub` });
    this.logs = new LogShipper(this.redis, this.keys, options.id, options.logMaxLines, log, now);
    this.packages = packages ?? new HostPackageCache(options, log);
    this.preparer = new RuntimeEnvPreparer(this.packages, new PackageStore(this.redis, this.keys), log, {
      now,
      onChange: () => this.scheduleFlush(),
      onSettled: () => this.nudge(),
    });
    this.view = new HostView(this.redis, this.keys, options.id);
    this.statusWriter = new StatusWriter(this.redis, this.keys, options.id);
  }

  get id(): string {
    return this.options.id;
  }

  info(): HostInfo {
    return {
      id: this.options.id,
      hostname: os.hostname(),
      pid: process.pid,
      resources: this.options.resources,
      gpuDevices: Math.ceil(this.options.resources.GPU ?? 0),
      startedAt: this.startedAt,
      lastHeartbeatAt: this.now(),
      draining: this.draining,
      emptySince: this.procs.size === 0 && this.preparer.size === 0 ? this.emptySince : null,
    };
  }

  /**
   * Registers the host once its first prestarted process is ready (at most
   * 10 s): a host that is listed can start a replica in the time its handler
   * takes to load.
   */
  async start(): Promise<void> {
    this.packages.attach();
    this.apply(planHost(new Map(), new Map(), this.local(), this.now()), this.now());
    await settledWithin(Promise.all([...this.prestarted].map((p) => p.settled)), 10_000);
    await this.heartbeat();
    // Only messages about this host: its cost does not grow with the cluster's changes.
    await this.sub.subscribe(this.keys.hostChanges(this.id));
    this.sub.on("message", () => this.nudge());
    await this.redis.publish(this.keys.changes, "hosts");
    this.log.info({ host: this.id, resources: this.options.resources }, "host registered");
    this.logs.start();
    this.ticker.start(0);
  }

  /** Runs a tick soon (a change was announced). */
  nudge(): void {
    this.ticker.nudge();
  }

  /** The heartbeat's two commands, on a pipeline that may carry more. */
  private heartbeatPipeline() {
    return this.redis
      .pipeline()
      .hset(this.keys.hosts, this.id, JSON.stringify(this.info()))
      .set(this.keys.hostAlive(this.id), String(this.now()), "PX", Math.round(this.options.heartbeatTimeoutS * 1000));
  }

  private async heartbeat(): Promise<void> {
    const results = (await this.heartbeatPipeline().exec()) ?? [];
    for (const [err] of results) if (err) throw err;
  }

  /** Heartbeats and checks, in one round trip, whether anything this host runs changed; reads only that. */
  private async tick(): Promise<void> {
    try {
      const pipeline = this.heartbeatPipeline();
      const check = this.view.appendCheck(pipeline, 2);
      const results = (await pipeline.exec()) ?? [];
      await this.view.catchUp(check.read(results), this.now());
      const now = this.now();
      for (const proc of this.procs.values()) proc.sendPing(now);
      this.apply(planHost(this.view.assignments, this.view.records, this.local(), now), now);
      await this.flushStatuses();
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, "host tick failed; retrying");
    }
  }

  /** What the plan needs to know of this host. */
  private local(): HostLocal {
    return {
      hostId: this.id,
      stopping: this.stopping,
      replicas: this.procs,
      finished: new Set(this.finished.keys()),
      prestart: { target: this.options.prestart, pooled: this.prestarted.size, earlyExitAt: this.prestartEarlyExitAt },
      runtimeEnvs: { ready: this.packages.ready(), preparing: this.preparer.view() },
    };
  }

  private apply(actions: readonly HostAction[], now: number): void {
    for (const action of actions) {
      switch (action.type) {
        case "spawn":
          this.spawn(action.assignment, action.record, action.appDir);
          break;
        case "prepare":
          this.preparer.begin(action.assignment, action.record);
          this.scheduleFlush();
          break;
        case "fail-prepare":
        case "abandon":
          this.endPreparation(action.id, action.type === "abandon" ? "stopped" : "failed");
          break;
        case "drain":
          this.procs.get(action.id)?.drain();
          break;
        case "settings":
          this.procs.get(action.id)?.applySettings(action.settings);
          break;
        case "reconfigure":
          this.procs.get(action.id)?.reconfigure(action.userConfig, action.configVersion, now);
          break;
        case "forget":
          this.finished.delete(action.id);
          break;
        case "prestart":
          for (let i = 0; i < action.count; i++) this.prestartOne();
          break;
        case "replace":
          this.replace(action, now);
          break;
      }
    }
  }

  /** Drains an unhealthy replica (or kills one whose event loop is blocked); the controller starts its successor. */
  private replace(action: Extract<HostAction, { type: "replace" }>, now: number): void {
    const proc = this.procs.get(action.id);
    if (!proc) return;
    const deployment = proc.config.deployment;
    proc.replace(action.kind, action.reason, now);
    this.log.warn({ replica: proc.id, deployment, reason: action.reason }, action.kind === "liveness" ? "replica killed: replacing it" : "replica unhealthy: draining and replacing it");
    this.logs.add(deployment, proc.id, "host", `replacing the replica: ${action.reason}`);
    recordReplacement(this.redis, this.keys, { deployment, replica: proc.id, host: this.id, kind: action.kind, reason: action.reason, at: now }).catch((err) =>
      this.log.warn({ err: errorMessage(err) }, "could not record a replacement"),
    );
    this.scheduleFlush();
  }

  private onHealthCheck(proc: ReplicaProcess, error: string | null): void {
    if (error === null) return;
    const deployment = proc.config.deployment;
    this.log.warn({ replica: proc.id, deployment, err: error, consecutive: proc.vitals.health.consecutiveFailures }, "health check failed");
    this.logs.add(deployment, proc.id, "host", `health check failed: ${error}`);
    countHealthCheckFailure(this.redis, this.keys, deployment).catch(() => undefined);
  }

  private prestartOne(): void {
    const spare = new PrestartedProcess(this.lastHandlerLoader, (ended) => {
      this.prestarted.delete(ended);
      if (!ended.ready && !this.stopping) {
        this.prestartEarlyExitAt = this.now();
        this.log.warn(
          { code: ended.child.exitCode, signal: ended.child.signalCode },
          `a prestarted replica process ended before it was ready; replicas start cold for ${PRESTART_BACKOFF_MS / 1000} s`,
        );
      }
    }, this.launcher);
    this.prestarted.add(spare);
    this.log.info({ replicaPid: spare.child.pid, loader: spare.loader }, "replica process prestarted");
  }

  /** A prestarted process (ready or still loading) that can take this environment, removed from the pool. */
  private takePrestarted(deploymentEnv: Record<string, string>): PrestartedProcess | undefined {
    for (const spare of this.prestarted) {
      if (spare.fits(deploymentEnv)) {
        this.prestarted.delete(spare);
        return spare;
      }
    }
    return undefined;
  }

  /** A replica that never started: its status says how it ended, until the controller collects it. */
  private endPreparation(id: string, outcome: "failed" | "stopped"): void {
    const status = this.preparer.finish(id, outcome, this.id);
    if (!status) return;
    this.finished.set(id, status);
    if (this.procs.size === 0 && this.preparer.size === 0) this.emptySince = this.now();
    this.scheduleFlush();
  }

  /** `appDir`: the replica's prepared runtimeEnv package (held until the process ends). */
  private spawn(a: ReplicaAssignment, record: DeploymentRecord, appDir = this.options.appDir): void {
    const spec = record.spec;
    if (record.runtimeEnv) {
      this.preparer.finish(a.id, "start");
      this.preparer.hold(a.id, record.runtimeEnv.hash);
    }
    this.lastHandlerLoader = handlerLoader(path.resolve(appDir, parseImportRef(spec.import).modulePath));
    const proc = new ReplicaProcess(
      replicaConfig(a, record, this.options, appDir),
      replicaEnv(a, record, this.options),
      {
        now: this.now,
        onChange: () => this.scheduleFlush(),
        onExit: (p, code, signal) => void this.onExit(p, code, signal),
        onLine: (p, stream, line) => this.logs.add(p.config.deployment, p.id, stream, line),
        onHealthCheck: (p, error) => this.onHealthCheck(p, error),
      },
      this.takePrestarted(spec.actorOptions.env),
      this.launcher,
    );
    this.procs.set(a.id, proc);
    this.log.info({ replica: a.id, deployment: a.deployment, replicaPid: proc.pid, prestarted: proc.prestarted }, "replica process started");
    this.logs.add(a.deployment, a.id, "host", `replica process started (pid ${proc.pid ?? "?"})`);
    this.scheduleFlush();
  }

  private async onExit(proc: ReplicaProcess, code: number | null, signal: NodeJS.Signals | null): Promise<void> {
    this.procs.delete(proc.id);
    this.preparer.release(proc.id, proc.state === "failed");
    if (this.procs.size === 0) this.emptySince = this.now();
    this.finished.set(proc.id, proc.status(this.id, this.now()));
    const expected = proc.drainRequested && proc.state === "stopped";
    if (expected) this.log.info({ replica: proc.id }, "replica stopped");
    else this.log.warn({ replica: proc.id, code, signal, error: proc.error }, "replica process ended unexpectedly");
    this.logs.add(proc.config.deployment, proc.id, "host", expected ? "replica stopped" : `replica process ended (${signal ? `signal ${signal}` : `code ${code}`})${proc.error ? `: ${proc.error}` : ""}`);
    if (proc.workerId) {
      try {
        const released = await releaseWorkerLocks(this.redis, this.keys, proc.config.deployment, proc.workerId);
        if (released > 0) this.log.warn({ replica: proc.id, released }, "requests of the ended replica released for retry");
      } catch (err) {
        this.log.warn({ err: errorMessage(err) }, "could not release the ended replica's job locks (they expire on their own)");
      }
    }
    const written = await this.flushStatuses().catch(() => 0);
    if (written > 0) await this.redis.publish(this.keys.changes, "replicas").catch(() => undefined);
    if (this.stopping && this.procs.size === 0) this.emptied?.();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      void this.flushStatuses()
        .then(async (written) => {
          if (written > 0) await this.redis.publish(this.keys.changes, "replicas");
        })
        .catch((err) => this.log.warn({ err: errorMessage(err) }, "could not write replica status"));
    });
  }

  /**
   * Writes the status of every local replica and of ended ones not yet
   * collected, those that changed (status-writer.ts). Returns how many were written.
   */
  private async flushStatuses(): Promise<number> {
    const statuses: ReplicaStatus[] = [];
    const now = this.now();
    for (const proc of this.procs.values()) statuses.push(proc.status(this.id, now));
    for (const status of this.preparer.statuses(this.id, now)) statuses.push(status);
    for (const status of this.finished.values()) if (!this.procs.has(status.id)) statuses.push(status);
    return this.statusWriter.write(statuses, now);
  }

  /**
   * Stops the host. `migrate`: mark the host draining so the controller starts
   * its replicas elsewhere first and then drains them here (scaling hosts down
   * under load). `drain`: drain the local replicas at once (`flotilla up` exit).
   */
  async stop(mode: "migrate" | "drain"): Promise<void> {
    if (this.stopping) return;
    const maxGraceS = Math.max(20, ...[...this.procs.values()].map((p) => p.config.gracefulShutdownTimeoutS));
    if (mode === "migrate" && this.procs.size > 0) {
      this.draining = true;
      await this.heartbeat().catch(() => undefined);
      await this.redis.publish(this.keys.changes, "hosts").catch(() => undefined);
      this.log.info({ replicas: this.procs.size }, "host draining: waiting for its replicas to move");
      const deadline = this.now() + (maxGraceS + 60) * 1000;
      while (this.procs.size > 0 && this.now() < deadline) {
        if (Number(await this.redis.exists(this.keys.leaderLease).catch(() => 0)) === 0) {
          this.log.warn("no controller leader to move the replicas: draining them in place");
          break;
        }
        await new Promise((r) => setTimeout(r, 250));
      }
    }
    this.stopping = true;
    for (const status of this.preparer.stopAll(this.id)) this.finished.set(status.id, status);
    for (const spare of this.prestarted) spare.stop();
    for (const proc of this.procs.values()) proc.drain();
    await this.waitEmpty((maxGraceS + 5) * 1000);
    for (const proc of this.procs.values()) proc.kill();
    await this.ticker.stop();
    await this.packages.detach();
    try {
      const ids = [...this.finished.keys()];
      const multi = this.redis.multi().del(this.keys.hostAlive(this.id)).hdel(this.keys.hosts, this.id);
      if (ids.length > 0) multi.hdel(this.keys.replicaStatus, ...ids).sadd(this.keys.replicaStatusChanged, ...ids);
      await multi.publish(this.keys.changes, "hosts").exec();
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, "could not deregister the host");
    }
    await this.logs.stop();
    await closeRedis(this.sub);
    await closeRedis(this.redis);
    this.log.info("host stopped");
  }

  /** Resolves when the last replica has exited (onExit calls `emptied`), or after `timeoutMs`. */
  private waitEmpty(timeoutMs: number): Promise<void> {
    if (this.procs.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.emptied = done;
    });
  }

  /** Replica processes running here (for tests and `status`). */
  localReplicas(): ReadonlyMap<string, ReplicaProcess> {
    return this.procs;
  }
}
