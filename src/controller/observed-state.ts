/**
 * Reads the whole cluster state from Redis in two round trips: what the
 * controller reconciles and what `flotilla status` shows.
 */
import type { Redis } from "ioredis";
import { restoreAutoscalerState, type AutoscalerState } from "../autoscaler/policy.js";
import { parseJsonHash } from "../shared/json-hash.js";
import type { Keys } from "../shared/keys.js";
import { queueDepths } from "../queue/queue-depths.js";
import type { ControllerInfo, DeploymentRecord, DeploymentStatusRecord, HostInfo, ReplicaAssignment, ReplicaStatus, RouterInfo } from "../shared/records.js";
import type { ObservedState } from "./reconcile.js";

export interface ClusterSnapshot extends ObservedState {
  controllers: Array<ControllerInfo & { alive: boolean; leader: boolean }>;
  routers: Array<RouterInfo & { alive: boolean }>;
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
      .exec()) ?? [];
  for (const [err] of res) if (err) throw err;
  const value = (i: number): unknown => res[i]?.[1];
  const deployments = parseJsonHash<DeploymentRecord>(value(0));
  const hostInfos = [...parseJsonHash<HostInfo>(value(2)).values()];
  const controllerInfos = [...parseJsonHash<ControllerInfo>(value(6)).values()];
  const routerInfos = [...parseJsonHash<RouterInfo>(value(7)).values()];
  const leader = (value(8) as string | null) ?? null;
  const assignments = parseJsonHash<ReplicaAssignment>(value(3));
  const queueNames = new Set([...deployments.keys(), ...[...assignments.values()].map((a) => a.deployment)]);

  const aliveCheck = redis.pipeline();
  for (const h of hostInfos) aliveCheck.exists(keys.hostAlive(h.id));
  for (const c of controllerInfos) aliveCheck.exists(keys.controllerAlive(c.id));
  for (const r of routerInfos) aliveCheck.exists(keys.routerAlive(r.id));
  const [alive, queues] = await Promise.all([
    hostInfos.length + controllerInfos.length + routerInfos.length > 0 ? aliveCheck.exec() : Promise.resolve([]),
    queueDepths(redis, keys, [...queueNames]),
  ]);
  const isAlive = (i: number): boolean => Number(alive?.[i]?.[1] ?? 0) === 1;
  const autoscaler = new Map<string, AutoscalerState>();
  for (const [name, raw] of parseJsonHash<unknown>(value(5))) autoscaler.set(name, restoreAutoscalerState(raw));

  return {
    now,
    deployments,
    previousStatus: parseJsonHash<DeploymentStatusRecord>(value(1)),
    hosts: hostInfos.map((h, i) => ({ ...h, alive: isAlive(i) })),
    assignments,
    replicaStatus: parseJsonHash<ReplicaStatus>(value(4)),
    queues,
    autoscaler,
    controllers: controllerInfos.map((c, i) => ({ ...c, alive: isAlive(hostInfos.length + i), leader: c.id === leader })),
    routers: routerInfos.map((r, i) => ({ ...r, alive: isAlive(hostInfos.length + controllerInfos.length + i) })),
  };
}
