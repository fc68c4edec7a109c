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
import { AdminApi } from "./admin-api.js";
import type { ControllerOptions } from "./controller-options.js";
import { unwrittenDecisions } from "./decision-diff.js";
import { decisionOps } from "./decision-ops.js";
import { hostAssignmentOps } from "./host-assignment-ops.js";
import { LeaderView } from "./leader-view.js";
import { LeaderLease } from "./leader-lease.js";
import { PackageGarbageCollector } from "./package-gc.js";
import { QueueJanitor } from "./queue-janitor.js";
import { reconcile, type Decisions } from "./reconcile.js";
import { applyRevisionWrites, RevisionReader } from "./revision-io.js";

/** One leader tick as the controller saw it: for measurements (the fleet simulation), not for control. */
export interface LeaderTick {
  /** Wall time of the tick's reconcile: read, decide, write. */
  ms: number;
  /** False when it failed or the lease was lost before the write. */
  ok: boolean;
}

export class Controller {
  private readonly keys: Keys;
  private readonly redis: Redis;
  private readonly sub: Redis;
  private readonly lease: LeaderLease;
  private readonly janitor: QueueJanitor;
  private readonly ticker: Ticker;
  private readonly packageGc: PackageGarbageCollector;
  private readonly view: LeaderView;
  private readonly revisions: RevisionReader;
  private leader = false;
  private readonly startedAt = Date.now();
  private admin: AdminApi | undefined;
  /** The admin API's port once listening. */
  adminPort: number | undefined;

  /**
   * @param options as parseControllerOptions (controller-options.ts) returns them
   * @param onLeaderTick called after each tick this controller ran as the leader
   */
  constructor(
    private readonly options: Readonly<ControllerOptions>,
    private readonly log: Logger,
    private readonly onLeaderTick?: (tick: LeaderTick) => void,
  ) {
    this.keys = new Keys(options.namespace);
    this.redis = createRedis(options.redisUrl, { name: `flotilla-controller-${options.id}` });
    this.sub = createRedis(options.redisUrl, { name: `flotilla-controller-${options.id}-sub` });
    this.lease = new LeaderLease(this.redis, this.keys.leaderLease, options.id, options.leaseTtlMs);
    this.janitor = new QueueJanitor(this.redis, this.keys, log);
    this.ticker = new Ticker(() => this.tick(), () => this.nextTickMs());
    this.packageGc = new PackageGarbageCollector(this.redis, this.keys, log, () => this.leader, {
      ...(options.packageGcIntervalMs !== undefined ? { intervalMs: options.packageGcIntervalMs } : {}),
      ...(options.packageGcGraceMs !== undefined ? { graceMs: options.packageGcGraceMs } : {}),
    });
    this.view = new LeaderView(this.redis, this.keys);
    this.revisions = new RevisionReader(this.redis, this.keys);
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
      if (message === "hosts") this.view.hostsChanged();
      // A standby waits for its next tick to try for the lease: a nudge would only make it ask sooner.
      if (message !== "status" && this.leader) this.ticker.nudge();
    });
    this.log.info({ controller: this.id }, "controller started");
    this.ticker.start();
    this.packageGc.start();
  }

  /**
   * A standby whose leader's lease runs out before its next tick tries again
   * just after it does: a dead leader is replaced without waiting out a tick.
   */
  private nextTickMs(): number {
    const left = this.leader ? undefined : this.lease.heldByOtherForMs;
    return left !== undefined && left + 20 < this.options.tickMs ? left + 20 : this.options.tickMs;
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
        // A new leader reads everything: what it knew as a standby, or before it lost the lease, may be stale.
        this.view.invalidate();
        if (leader) this.log.info({ controller: this.id }, "became the leader");
        else this.log.warn({ controller: this.id }, "lost the leader lease; standing by");
      }
      if (!leader) return;
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, "controller tick failed; retrying");
      return;
    }
    const startedAt = performance.now();
    let ok = false;
    try {
      ok = await this.reconcileOnce();
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, "controller tick failed; retrying");
    }
    this.onLeaderTick?.({ ms: performance.now() - startedAt, ok });
  }

  /** One reconcile; false when the lease was lost before the write. */
  private async reconcileOnce(): Promise<boolean> {
    const now = Date.now();
    const { state: observed, full, changedDeployments } = await this.view.read(now);
    if (full) this.revisions.clear();
    const source = { host: os.hostname(), user: `controller:${this.id}` };
    const revisions = await this.revisions.inputs(observed.deployments, this.view.rollouts, (name) => this.view.stampOf(name), source);
    const state = { ...observed, revisions };
    const decisions = reconcile(state, (deployment) => `${deployment}-${uuidv4().slice(0, 8)}`);
    if (!(await this.applyRevisions(decisions))) {
      // Records read this tick changed all the same: their hosts hear of it now, not only at their next check.
      if (this.leader) await this.announce([], changedDeployments, false);
      return this.leader;
    }
    const writes = unwrittenDecisions(decisions, this.view);
    const hostWrites = hostAssignmentOps(writes, this.view.assignments, this.keys);
    let applied: boolean;
    try {
      applied = await this.lease.fencedApply([...decisionOps(writes, this.keys), ...hostWrites.ops]);
    } catch (err) {
      this.view.invalidate();
      throw err;
    }
    if (!applied) {
      this.leader = false;
      this.view.invalidate();
      this.log.warn("lost the leader lease before applying; nothing written");
      return false;
    }
    this.view.applied(writes, now);
    await this.announce(hostWrites.hosts, changedDeployments, writes.upsert.length > 0 || writes.remove.length > 0);
    for (const e of decisions.events) this.log[e.level]({ deployment: e.deployment }, e.message);
    // Each at once, not one round trip after another: a host lost with its replicas makes many.
    await Promise.all(decisions.releaseLocks.map(({ deployment, workerId }) => releaseWorkerLocks(this.redis, this.keys, deployment, workerId).catch(() => 0)));
    await Promise.all([...state.queues].filter(([, depth]) => depth.failed > 0).map(([name]) => this.janitor.answerFailed(name)));
    // Readers already ignore stale counts: they are deleted as often as their queues are read.
    await this.janitor.forgetDeadRequesters(this.view.queuesRead.map((name) => [name, this.view.queues.get(name)] as const));
    for (const name of decisions.forget) await this.janitor.retire(name);
    return true;
  }

  /**
   * Tells the hosts whose assignments were just written, and those running a
   * deployment whose record changed, each on its own channel (a host that
   * misses the message sees the change at its next heartbeat check); and, when
   * replicas changed, everyone listening to the cluster's changes.
   */
  private async announce(assigned: readonly string[], changedDeployments: readonly string[], replicasChanged: boolean): Promise<void> {
    const hosts = new Set(assigned);
    if (changedDeployments.length > 0) {
      const changed = new Set(changedDeployments);
      for (const a of this.view.assignments.values()) if (a.host !== null && changed.has(a.deployment)) hosts.add(a.host);
    }
    if (hosts.size === 0 && !replicasChanged) return;
    const p = this.redis.pipeline();
    for (const host of hosts) p.publish(this.keys.hostChanges(host), "assignments");
    if (replicasChanged) p.publish(this.keys.changes, "replicas");
    await p.exec();
  }

  /**
   * Stops at once as a crashed process would: no more ticks, connections
   * dropped, the lease and the registration left to expire (failover tests).
   */
  async abandon(): Promise<void> {
    // Connections first: a tick under way fails from here on, as it would in a dead process.
    this.sub.disconnect();
    this.redis.disconnect();
    this.leader = false;
    await this.ticker.stop();
    await this.admin?.stop();
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
    // Whether or not each write applies, what was read of those revisions is no longer known to hold.
    this.revisions.forget(decisions.revisionWrites.map((w) => w.deployment));
    const result = await applyRevisionWrites(this.lease, this.redis, this.keys, decisions.revisionWrites);
    if (result === "done") return true;
    if (result === "not-leader") {
      this.leader = false;
      this.view.invalidate();
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
