/**
 * The leader's copy of the cluster state, kept up to date by reading only
 * what changed: the deployments whose record stamp changed (checked through
 * one version counter), the replica statuses hosts marked changed, the host
 * list every few seconds or when a host announces itself, host liveness once
 * a second, queue depths of autoscaled deployments (and of those that lost a
 * replica) every tick and of all every few seconds. What only the leader
 * writes (assignments, its memory, the statuses users read, rollout records) it keeps from its
 * own writes. Everything is read in full when it becomes the leader, after a
 * failed write, and every few minutes as a safety net.
 */
import type { Redis } from "ioredis";
import { restoreAutoscalerState, type AutoscalerState } from "../autoscaler/policy.js";
import { readClusterState } from "../client/cluster-state.js";
import { parseJsonHash } from "../shared/json-hash.js";
import type { Keys } from "../shared/keys.js";
import { LuaScript } from "../shared/lua-script.js";
import { queueDepths, type QueueDepth } from "../queue/queue-depths.js";
import type { ControllerRecord, DeploymentRecord, DeploymentStatusRecord, HostInfo, ReplicaAssignment, ReplicaStatus, RolloutRecord } from "../shared/records.js";
import type { Written } from "./decision-diff.js";
import type { Decisions, ObservedHost, ObservedState } from "./reconcile-types.js";

/** Intervals of the reads that are not driven by a change. */
export const LEADER_READS = {
  /** Everything, as a safety net. */
  fullMs: 5 * 60_000,
  /** The host list (a host's start, stop and draining are also announced). */
  hostsMs: 5_000,
  /** Which hosts are alive. */
  aliveMs: 1_000,
  /** Every deployment's queue depth (failed jobs to answer, the status's queue figures). */
  queuesMs: 5_000,
  /** After a replica of a deployment fails or is lost, its queue is read every tick for this long. */
  queueWatchMs: 60_000,
};

/**
 * KEYS[1] the replica-status-changed set, KEYS[2] the replica-status hash.
 * Takes the set (deletes it) and returns id1, status1, id2, status2, ...
 * (a status that is gone comes back as nil).
 */
const TAKE_CHANGED_STATUSES = new LuaScript(`
local ids = redis.call("SMEMBERS", KEYS[1])
if #ids == 0 then return {} end
redis.call("DEL", KEYS[1])
local out = {}
for i = 1, #ids, 1000 do
  local last = math.min(i + 999, #ids)
  local values = redis.call("HMGET", KEYS[2], unpack(ids, i, last))
  for j = i, last do
    out[#out + 1] = ids[j]
    out[#out + 1] = values[j - i + 1]
  end
end
return out
`);

export interface LeaderRead {
  state: ObservedState;
  /** Everything was read from Redis (not only changes). */
  full: boolean;
  /** Deployments whose record changed since the last read. */
  changedDeployments: string[];
}

type PipelineResult = Array<[Error | null, unknown]>;

function values(results: PipelineResult | null): unknown[] {
  return (results ?? []).map(([err, value]) => {
    if (err) throw err;
    return value;
  });
}

export class LeaderView implements Written {
  deployments = new Map<string, DeploymentRecord>();
  /** Stamp of each record (deployment-generations). */
  private stamps = new Map<string, string>();
  private deploymentsVersion: string | null = null;
  hosts = new Map<string, HostInfo>();
  private alive = new Set<string>();
  assignments = new Map<string, ReplicaAssignment>();
  replicaStatus = new Map<string, ReplicaStatus>();
  statuses = new Map<string, DeploymentStatusRecord>();
  memory = new Map<string, ControllerRecord>();
  autoscaler = new Map<string, AutoscalerState>();
  queues = new Map<string, QueueDepth>();
  rollouts = new Map<string, RolloutRecord>();
  /** The deployments whose queues the last read read (the housekeeping of those queues follows the same cadence). */
  queuesRead: string[] = [];
  private queueWatch = new Map<string, number>();
  private stale = true;
  private hostsAnnounced = false;
  private at = { full: -Infinity, hosts: -Infinity, alive: -Infinity, queues: -Infinity };

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
  ) {}

  /** The next read is a full one (a new leader, a failed or unknown write). */
  invalidate(): void {
    this.stale = true;
  }

  /** The stamp of a deployment's record as last read (what changes with every write of the record). */
  stampOf(deployment: string): string | undefined {
    return this.stamps.get(deployment);
  }

  /** A host started, stopped or began draining: the host list is read at the next tick. */
  hostsChanged(): void {
    this.hostsAnnounced = true;
  }

  async read(now: number): Promise<LeaderRead> {
    if (this.stale || now - this.at.full >= LEADER_READS.fullMs) return this.readAll(now);
    const changedDeployments = await this.readChanges(now);
    return { state: this.observed(now), full: false, changedDeployments };
  }

  private observed(now: number): ObservedState {
    const hosts: ObservedHost[] = [...this.hosts.values()].map((h) => ({ ...h, alive: this.alive.has(h.id) }));
    return { now, deployments: this.deployments, memory: this.memory, hosts, assignments: this.assignments, replicaStatus: this.replicaStatus, queues: this.queues, autoscaler: this.autoscaler, rollouts: this.rollouts };
  }

  private async readAll(now: number): Promise<LeaderRead> {
    // Cleared before reading: a host announcing itself while this read runs is read again at the next tick, never missed.
    this.hostsAnnounced = false;
    // The changed set is emptied first: a status written from here on is read again at the next tick, never missed.
    const [, version, stampsRaw, rolloutsRaw] = values(
      await this.redis.pipeline().del(this.keys.replicaStatusChanged).get(this.keys.deploymentsVersion).hgetall(this.keys.deploymentGenerations).hgetall(this.keys.rollouts).exec(),
    );
    const snap = await readClusterState(this.redis, this.keys, now);
    const stamps = new Map(Object.entries((stampsRaw ?? {}) as Record<string, string>));
    // Only records seen before and changed since: a new leader's first read tells no host anything.
    const changedDeployments = [...snap.deployments.keys()].filter((name) => this.stamps.has(name) && stamps.get(name) !== this.stamps.get(name));
    this.deploymentsVersion = (version as string | null) ?? null;
    this.stamps = stamps;
    this.deployments = new Map(snap.deployments);
    this.hosts = new Map(snap.hosts.map(({ alive: _alive, ...h }) => [h.id, h]));
    this.alive = new Set(snap.hosts.filter((h) => h.alive).map((h) => h.id));
    this.assignments = new Map(snap.assignments);
    this.replicaStatus = new Map(snap.replicaStatus);
    this.statuses = new Map(snap.statuses);
    this.memory = new Map(snap.memory);
    this.autoscaler = new Map([...snap.autoscaler].map(([name, raw]) => [name, restoreAutoscalerState(raw)]));
    this.rollouts = parseJsonHash<RolloutRecord>(rolloutsRaw as Record<string, string>);
    this.queues = new Map(snap.queues);
    this.queuesRead = [...snap.queues.keys()];
    this.at = { full: now, hosts: now, alive: now, queues: now };
    this.stale = false;
    return { state: this.observed(now), full: true, changedDeployments };
  }

  /** Reads what changed; returns the deployments whose record changed. */
  private async readChanges(now: number): Promise<string[]> {
    const readHosts = this.hostsAnnounced || now - this.at.hosts >= LEADER_READS.hostsMs;
    this.hostsAnnounced = false;
    const p = this.redis.pipeline().get(this.keys.deploymentsVersion);
    if (readHosts) p.hgetall(this.keys.hosts);
    const [[version, hostsRaw], changed] = await Promise.all([
      p.exec().then(values),
      TAKE_CHANGED_STATUSES.run(this.redis, [this.keys.replicaStatusChanged, this.keys.replicaStatus], []),
    ]);
    this.takeStatuses(changed as Array<string | null>, now);
    if (readHosts) {
      this.hosts = parseJsonHash<HostInfo>(hostsRaw);
      this.at.hosts = now;
    }
    const changedDeployments = (version ?? null) !== this.deploymentsVersion ? await this.readDeployments(version as string | null) : [];
    if (readHosts || now - this.at.alive >= LEADER_READS.aliveMs) await this.readAlive(now);
    await this.readQueues(now);
    return changedDeployments;
  }

  private takeStatuses(flat: ReadonlyArray<string | null>, now: number): void {
    for (let i = 0; i < flat.length; i += 2) {
      const id = flat[i] as string;
      const raw = flat[i + 1];
      if (raw === null || raw === undefined) {
        this.replicaStatus.delete(id);
        continue;
      }
      try {
        const status = JSON.parse(raw) as ReplicaStatus;
        this.replicaStatus.set(id, status);
        if (status.state === "failed") this.queueWatch.set(status.deployment, now + LEADER_READS.queueWatchMs);
      } catch {
        // A status a newer or broken writer wrote: ignored, as parseJsonHash does.
      }
    }
  }

  /** The records whose stamp changed, and those deleted. */
  private async readDeployments(version: string | null): Promise<string[]> {
    const stamps = new Map(Object.entries(await this.redis.hgetall(this.keys.deploymentGenerations)));
    const changed = [...stamps].filter(([name, stamp]) => this.stamps.get(name) !== stamp).map(([name]) => name);
    const deleted = [...this.stamps.keys()].filter((name) => !stamps.has(name));
    const raw = changed.length > 0 ? await this.redis.hmget(this.keys.deployments, ...changed) : [];
    changed.forEach((name, i) => {
      const text = raw[i];
      const record = text ? (JSON.parse(text) as DeploymentRecord) : undefined;
      if (record) this.deployments.set(name, record);
      else this.deployments.delete(name);
    });
    for (const name of deleted) this.deployments.delete(name);
    this.stamps = stamps;
    this.deploymentsVersion = version;
    return [...changed, ...deleted];
  }

  private async readAlive(now: number): Promise<void> {
    const ids = [...this.hosts.keys()];
    const p = this.redis.pipeline();
    for (const id of ids) p.exists(this.keys.hostAlive(id));
    const answers = ids.length > 0 ? values(await p.exec()) : [];
    this.alive = new Set(ids.filter((_, i) => Number(answers[i]) === 1));
    this.at.alive = now;
  }

  private async readQueues(now: number): Promise<void> {
    const all = now - this.at.queues >= LEADER_READS.queuesMs;
    for (const [name, until] of this.queueWatch) if (until < now) this.queueWatch.delete(name);
    const names = all
      ? [...new Set([...this.deployments.keys(), ...[...this.assignments.values()].map((a) => a.deployment)])]
      : [...this.deployments.values()].filter((r) => r.spec.autoscalingConfig || this.queueWatch.has(r.spec.name) || (this.queues.get(r.spec.name)?.failed ?? 0) > 0).map((r) => r.spec.name);
    this.queuesRead = names;
    if (names.length === 0) return;
    for (const [name, depth] of await queueDepths(this.redis, this.keys, names)) this.queues.set(name, depth);
    if (all) this.at.queues = now;
  }

  /** What the leader wrote (the decisions as applied): its copy follows without reading back. */
  applied(d: Decisions, now: number): void {
    for (const a of d.upsert) this.assignments.set(a.id, a);
    for (const id of d.remove) {
      this.assignments.delete(id);
      this.replicaStatus.delete(id);
    }
    for (const s of d.statuses) this.statuses.set(s.name, s);
    for (const [name, m] of d.memory) this.memory.set(name, m);
    for (const [name, st] of d.autoscaler) this.autoscaler.set(name, st);
    for (const [name, r] of d.rollouts) {
      if (r === null) this.rollouts.delete(name);
      else this.rollouts.set(name, r);
    }
    for (const name of d.forget) {
      this.statuses.delete(name);
      this.memory.delete(name);
      this.autoscaler.delete(name);
      this.queues.delete(name);
    }
    for (const id of d.forgetHosts) this.hosts.delete(id);
    for (const { deployment } of d.releaseLocks) this.queueWatch.set(deployment, now + LEADER_READS.queueWatchMs);
  }
}
