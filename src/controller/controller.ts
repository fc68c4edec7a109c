/**
 * The controller process: competes for the leader lease; the leader reads the
 * cluster state, runs the pure reconcile, and applies its decisions with a
 * fenced write. Ticks every 500 ms and whenever a change is announced.
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
import { AdminApi, type AdminApiOptions } from "./admin-api.js";
import { LeaderLease, type RedisOp } from "./leader-lease.js";
import { readClusterState } from "./observed-state.js";
import { QueueJanitor } from "./queue-janitor.js";
import { reconcile, type Decisions } from "./reconcile.js";

export interface ControllerOptions {
  id: string;
  redisUrl: string;
  namespace: string;
  /** @default 500 */
  tickMs?: number;
  /** A dead leader is replaced after at most this long. @default 3000 */
  leaseTtlMs?: number;
  /** Serve the admin API; omitted: no admin API. */
  admin?: AdminApiOptions;
}

/** Dead hosts stay listed (alive: false) this long after their last heartbeat. */
const DEAD_HOST_RETENTION_MS = 5 * 60_000;

export class Controller {
  private readonly keys: Keys;
  private readonly redis: Redis;
  private readonly sub: Redis;
  private readonly lease: LeaderLease;
  private readonly janitor: QueueJanitor;
  private readonly tickMs: number;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private ticking: Promise<void> | undefined;
  private tickAgain = false;
  private leader = false;
  private readonly startedAt = Date.now();
  private admin: AdminApi | undefined;
  /** The admin API's port once listening. */
  adminPort: number | undefined;

  constructor(
    private readonly options: ControllerOptions,
    private readonly log: Logger,
  ) {
    this.keys = new Keys(options.namespace);
    this.redis = createRedis(options.redisUrl, { name: `flotilla-controller-${options.id}` });
    this.sub = createRedis(options.redisUrl, { name: `flotilla-controller-${options.id}-sub` });
    this.tickMs = options.tickMs ?? 500;
    this.lease = new LeaderLease(this.redis, this.keys.leaderLease, options.id, options.leaseTtlMs ?? 3000);
    this.janitor = new QueueJanitor(this.redis, this.keys, log);
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
    this.running = true;
    await this.sub.subscribe(this.keys.changes);
    this.sub.on("message", (_channel: string, message: string) => {
      if (message !== "status") this.nudge();
    });
    this.log.info({ controller: this.id }, "controller started");
    this.schedule(0);
  }

  private nudge(): void {
    if (!this.leader) return;
    if (this.ticking) this.tickAgain = true;
    else this.schedule(0);
  }

  private schedule(ms: number): void {
    if (!this.running) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.ticking = this.tick().finally(() => {
        this.ticking = undefined;
        const again = this.tickAgain;
        this.tickAgain = false;
        this.schedule(again ? 0 : this.tickMs);
      });
    }, ms);
  }

  private async register(): Promise<void> {
    const info: ControllerInfo = { id: this.id, hostname: os.hostname(), pid: process.pid, startedAt: this.startedAt };
    await this.redis
      .multi()
      .hset(this.keys.controllers, this.id, JSON.stringify(info))
      .set(this.keys.controllerAlive(this.id), "1", "PX", (this.options.leaseTtlMs ?? 3000) + 2000)
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
    const state = await readClusterState(this.redis, this.keys);
    const decisions = reconcile(state, (deployment) => `${deployment}-${uuidv4().slice(0, 8)}`);
    const ops = this.ops(decisions, state.now, state.hosts);
    if (!(await this.lease.fencedApply(ops))) {
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

  private ops(d: Decisions, now: number, hosts: ReadonlyArray<{ id: string; alive: boolean; lastHeartbeatAt?: number }>): RedisOp[] {
    const ops: RedisOp[] = [];
    if (d.upsert.length > 0) ops.push(["HSET", this.keys.replicas, ...d.upsert.flatMap((a) => [a.id, JSON.stringify(a)])]);
    if (d.remove.length > 0) {
      ops.push(["HDEL", this.keys.replicas, ...d.remove]);
      ops.push(["HDEL", this.keys.replicaStatus, ...d.remove]);
    }
    if (d.statuses.length > 0) ops.push(["HSET", this.keys.deploymentStatus, ...d.statuses.flatMap((s) => [s.name, JSON.stringify(s)])]);
    if (d.autoscaler.size > 0) ops.push(["HSET", this.keys.autoscaler, ...[...d.autoscaler].flatMap(([k, v]) => [k, JSON.stringify(v)])]);
    if (d.forget.length > 0) {
      ops.push(["HDEL", this.keys.deploymentStatus, ...d.forget]);
      ops.push(["HDEL", this.keys.autoscaler, ...d.forget]);
    }
    const gone = hosts.filter((h) => !h.alive && now - (h.lastHeartbeatAt ?? 0) > DEAD_HOST_RETENTION_MS).map((h) => h.id);
    if (gone.length > 0) ops.push(["HDEL", this.keys.hosts, ...gone]);
    return ops;
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    await this.ticking;
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
