/**
 * The controller process: competes for the leader lease; the leader reads the
 * cluster state, runs the pure reconcile, and applies its decisions with a
 * fenced write. Ticks every `tickMs` and whenever a change is announced.
 */
import os from "node:os";
import type { Redis } from "ioredis";
import { v4 as uuidv4 } from "uuid";
import { errorMessage } from "../errors.js";
import { Keys } from "../shared/keys.js";
import type { Logger } from "../shared/logger.js";
import { releaseWorkerLocks } from "../queue/worker-locks.js";
import type { ControllerInfo } from "../shared/records.js";
import { closeRedis, createRedis } from "../shared/redis.js";
import { Ticker } from "../shared/ticker.js";
import { readClusterState } from "../client/cluster-state.js";
import { restoreAutoscalerState } from "../autoscaler/policy.js";
import { AdminApi } from "./admin-api.js";
import type { ControllerOptions } from "./controller-options.js";
import { decisionOps } from "./decision-ops.js";
import { LeaderLease } from "./leader-lease.js";
import { PackageGarbageCollector } from "./package-gc.js";
import { QueueJanitor } from "./queue-janitor.js";
import { reconcile, type Decisions } from "./reconcile.js";
import { applyRevisionWrites, readRolloutInputs } from "./revision-io.js";

export class Controller {
  private readonly keys: Keys;
  private readonly redis: Redis;
  private readonly sub: Redis;
  private readonly lease: LeaderLease;
  private readonly janitor: QueueJanitor;
  private readonly ticker: Ticker;
  private readonly packageGc: PackageGarbageCollector;
  private leader = false;
  private readonly startedAt = Date.now();
  private admin: AdminApi | undefined;
  /** The admin API's port once listening. */
  adminPort: number | undefined;

  /** @param options as parseControllerOptions (controller-options.ts) returns them */
  constructor(
    private readonly options: Readonly<ControllerOptions>,
    private readonly log: Logger,
  ) {
    this.keys = new Keys(options.namespace);
    this.redis = createRedis(options.redisUrl, { name: `flotilla-controller-${options.id}` });
    this.sub = createRedis(options.redisUrl, { name: `flotilla-controller-${options.id}-sub` });
    this.lease = new LeaderLease(this.redis, this.keys.leaderLease, options.id, options.leaseTtlMs);
    this.janitor = new QueueJanitor(this.redis, this.keys, log);
    this.ticker = new Ticker(() => this.tick(), () => options.tickMs);
    this.packageGc = new PackageGarbageCollector(this.redis, this.keys, log, () => this.leader, {
      ...(options.packageGcIntervalMs !== undefined ? { intervalMs: options.packageGcIntervalMs } : {}),
      ...(options.packageGcGraceMs !== undefined ? { graceMs: options.packageGcGraceMs } : {}),
    });
  }

  get id(): string {
    return this.options.id;
  }

  get isLeader(): boolean {
    return this.leader;
  }

  async start(): Promise<void> {
    if (this.options.admin) {
      this.admin = new AdminApi(this.redis, this.keys, this.options.admin, this.log, () => this.leader);
      this.adminPort = await this.admin.start();
    }
    await this.sub.subscribe(this.keys.changes);
    this.sub.on("message", (_channel: string, message: string) => {
      // A standby waits for its next tick to try for the lease: a nudge would only make it ask sooner.
      if (message !== "status" && this.leader) this.ticker.nudge();
    });
    this.log.info({ controller: this.id }, "controller started");
    this.ticker.start();
    this.packageGc.start();
  }

  private async register(): Promise<void> {
    const info: ControllerInfo = { id: this.id, hostname: os.hostname(), pid: process.pid, startedAt: this.startedAt };
    await this.redis
      .multi()
      .hset(this.keys.controllers, this.id, JSON.stringify(info))
      .set(this.keys.controllerAlive(this.id), "1", "PX", this.options.leaseTtlMs + 2000)
      .exec();
  }

  private async tick(): Promise<void> {
    try {
      await this.register();
      const leader = await this.lease.tryAcquire();
      if (leader !== this.leader) {
        this.leader = leader;
        if (leader) this.log.info({ controller: this.id }, "became the leader");
        else this.log.warn({ controller: this.id }, "lost the leader lease; standing by");
      }
      if (!leader) return;
      await this.reconcileOnce();
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, "controller tick failed; retrying");
    }
  }

  private async reconcileOnce(): Promise<void> {
    const snapshot = await readClusterState(this.redis, this.keys);
    const autoscaler = new Map([...snapshot.autoscaler].map(([name, raw]) => [name, restoreAutoscalerState(raw)]));
    const rollouts = await readRolloutInputs(this.redis, this.keys, snapshot.deployments, { host: os.hostname(), user: `controller:${this.id}` });
    const state = { ...snapshot, autoscaler, ...rollouts };
    const decisions = reconcile(state, (deployment) => `${deployment}-${uuidv4().slice(0, 8)}`);
    if (!(await this.applyRevisions(decisions))) return;
    if (!(await this.lease.fencedApply(decisionOps(decisions, this.keys)))) {
      this.leader = false;
      this.log.warn("lost the leader lease before applying; nothing written");
      return;
    }
    for (const e of decisions.events) this.log[e.level]({ deployment: e.deployment }, e.message);
    for (const { deployment, workerId } of decisions.releaseLocks) {
      await releaseWorkerLocks(this.redis, this.keys, deployment, workerId).catch(() => 0);
    }
    for (const [name, depth] of state.queues) {
      if (depth.failed > 0) await this.janitor.answerFailed(name);
    }
    await this.janitor.forgetDeadRequesters([...state.queues.keys()]);
    for (const name of decisions.forget) await this.janitor.retire(name);
    if (decisions.upsert.length > 0 || decisions.remove.length > 0) {
      await this.redis.publish(this.keys.changes, "replicas");
    }
  }

  /**
   * Writes revision outcomes and automatic rollbacks before the tick's other
   * decisions (so the rollout records saying they are done never run ahead of
   * them). False when the rest of the tick must not be applied: the lease is
   * lost, or a rollback replaced a record the tick decided about (the next
   * tick, at once, decides from the new one).
   */
  private async applyRevisions(decisions: Decisions): Promise<boolean> {
    if (decisions.revisionWrites.length === 0) return true;
    const result = await applyRevisionWrites(this.lease, this.redis, this.keys, decisions.revisionWrites);
    if (result === "done") return true;
    if (result === "not-leader") {
      this.leader = false;
      this.log.warn("lost the leader lease before applying; nothing written");
      return false;
    }
    for (const e of decisions.events) this.log[e.level]({ deployment: e.deployment }, e.message);
    this.ticker.nudge();
    return false;
  }

  async stop(): Promise<void> {
    await this.packageGc.stop();
    await this.ticker.stop();
    try {
      if (this.leader) await this.lease.release();
      await this.redis.multi().hdel(this.keys.controllers, this.id).del(this.keys.controllerAlive(this.id)).exec();
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, "could not deregister the controller");
    }
    this.leader = false;
    await this.admin?.stop();
    await this.janitor.close();
    await closeRedis(this.sub);
    await closeRedis(this.redis);
    this.log.info({ controller: this.id }, "controller stopped");
  }
}
