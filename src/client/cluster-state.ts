/**
 * Reads the whole cluster state from Redis in two round trips: what the
 * controller reconciles and what `flotilla status` shows.
 */
import type { Redis } from "ioredis";
import { parseJsonHash } from "../shared/json-hash.js";
import type { Keys } from "../shared/keys.js";
import { queueDepths, type QueueDepth } from "../queue/queue-depths.js";
import type {
  ControllerInfo,
  ControllerRecord,
  DeploymentRecord,
  DeploymentStatusRecord,
  HostInfo,
  ReplicaAssignment,
  ReplicaStatus,
  RouterInfo,
} from "../shared/records.js";
import { readHealthEvents, type HealthEvents } from "../shared/health-events.js";
import { AsyncRecords, type AsyncStatus } from "../queue/async-requests.js";
import { readRequestRates, type RequestRates } from "./request-counter.js";

export interface ClusterSnapshot {
  now: number;
  deployments: ReadonlyMap<string, DeploymentRecord>;
  /** The statuses the leader controller last wrote (for people; the controller does not read them back). */
  statuses: ReadonlyMap<string, DeploymentStatusRecord>;
  /** The leader controller's own memory of each deployment. */
  memory: ReadonlyMap<string, ControllerRecord>;
  hosts: ReadonlyArray<HostInfo & { alive: boolean }>;
  assignments: ReadonlyMap<string, ReplicaAssignment>;
  replicaStatus: ReadonlyMap<string, ReplicaStatus>;
  queues: ReadonlyMap<string, QueueDepth>;
  /** Each autoscaled deployment's stored autoscaler state, as stored (the controller restores it). */
  autoscaler: ReadonlyMap<string, unknown>;
  controllers: Array<ControllerInfo & { alive: boolean; leader: boolean }>;
  routers: Array<RouterInfo & { alive: boolean }>;
  /** Health check failures and replacements, as hosts counted them. */
  health?: HealthEvents;
  /** Per deployment: async requests that reached each status (queued counts submissions). */
  asyncCounts?: Map<string, Record<AsyncStatus, number>>;
  /** Per deployment: requests per second (cluster-wide, over the last seconds) and requests queued in all. */
  requestRates?: RequestRates;
}

export async function readClusterState(redis: Redis, keys: Keys, now = Date.now()): Promise<ClusterSnapshot> {
  const res =
    (await redis
      .pipeline()
      .hgetall(keys.deployments)
      .hgetall(keys.deploymentStatus)
      .hgetall(keys.hosts)
      .hgetall(keys.replicas)
      .hgetall(keys.replicaStatus)
      .hgetall(keys.autoscaler)
      .hgetall(keys.controllers)
      .hgetall(keys.routers)
      .get(keys.leaderLease)
      .hgetall(keys.controllerRecords)
      .time()
      .exec()) ?? [];
  for (const [err] of res) if (err) throw err;
  const value = (i: number): unknown => res[i]?.[1];
  const deployments = parseJsonHash<DeploymentRecord>(value(0));
  const hostInfos = [...parseJsonHash<HostInfo>(value(2)).values()];
  const controllerInfos = [...parseJsonHash<ControllerInfo>(value(6)).values()];
  const routerInfos = [...parseJsonHash<RouterInfo>(value(7)).values()];
  const leader = (value(8) as string | null) ?? null;
  const assignments = parseJsonHash<ReplicaAssignment>(value(3));
  // An older controller wrote the reason as text; the leader writes it again in the current shape.
  for (const a of assignments.values()) if (typeof a.pendingReason !== "object") delete a.pendingReason;
  const queueNames = new Set([...deployments.keys(), ...[...assignments.values()].map((a) => a.deployment)]);

  const aliveCheck = redis.pipeline();
  for (const h of hostInfos) aliveCheck.exists(keys.hostAlive(h.id));
  for (const c of controllerInfos) aliveCheck.exists(keys.controllerAlive(c.id));
  for (const r of routerInfos) aliveCheck.exists(keys.routerAlive(r.id));
  // Rates go by Redis's clock: a reader's own may be another machine's.
  const redisNowS = Number((value(10) as [string, string] | undefined)?.[0] ?? now / 1000);
  const [alive, queues, health, asyncCounts, requestRates] = await Promise.all([
    hostInfos.length + controllerInfos.length + routerInfos.length > 0 ? aliveCheck.exec() : Promise.resolve([]),
    queueDepths(redis, keys, [...queueNames]),
    readHealthEvents(redis, keys),
    new AsyncRecords(redis, keys).counts(),
    readRequestRates(redis, keys, redisNowS),
  ]);
  const isAlive = (i: number): boolean => Number(alive?.[i]?.[1] ?? 0) === 1;
  const autoscaler = parseJsonHash<unknown>(value(5));

  return {
    now,
    deployments,
    statuses: parseJsonHash<DeploymentStatusRecord>(value(1)),
    memory: parseJsonHash<ControllerRecord>(value(9)),
    hosts: hostInfos.map((h, i) => ({ ...h, alive: isAlive(i) })),
    assignments,
    replicaStatus: parseJsonHash<ReplicaStatus>(value(4)),
    queues,
    autoscaler,
    controllers: controllerInfos.map((c, i) => ({ ...c, alive: isAlive(hostInfos.length + i), leader: c.id === leader })),
    routers: routerInfos.map((r, i) => ({ ...r, alive: isAlive(hostInfos.length + controllerInfos.length + i) })),
    health,
    asyncCounts,
    requestRates,
  };
}
