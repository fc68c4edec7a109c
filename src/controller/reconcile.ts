/**
 * One controller tick as a pure function: from the desired state (deployments)
 * and the observed state (hosts, replicas, queues) to decisions. The loop in
 * controller.ts reads the state, calls this, and applies the result. Nothing
 * here depends on having seen an earlier event.
 */
import { autoscale, initialAutoscalerState, type AutoscalerState } from "../autoscaler/policy.js";
import type { QueueDepth } from "../queue/queue-depths.js";
import type {
  DeploymentRecord,
  DeploymentStatusRecord,
  HostInfo,
  ReplicaAssignment,
  ReplicaStatus,
  ResourceSet,
} from "../shared/records.js";
import { place, type HostCapacity, type PlacedReplica, type PlacementRequest } from "./placement.js";
import { planRollout, type PlannerReplica } from "./rollout-planner.js";

export interface ObservedState {
  now: number;
  deployments: ReadonlyMap<string, DeploymentRecord>;
  previousStatus: ReadonlyMap<string, DeploymentStatusRecord>;
  hosts: ReadonlyArray<HostInfo & { alive: boolean }>;
  assignments: ReadonlyMap<string, ReplicaAssignment>;
  replicaStatus: ReadonlyMap<string, ReplicaStatus>;
  queues: ReadonlyMap<string, QueueDepth>;
  autoscaler: ReadonlyMap<string, AutoscalerState>;
}

export interface Decisions {
  /** Assignments to write (new ones, drains, placements). */
  upsert: ReplicaAssignment[];
  /** Replica ids whose assignment and status are deleted. */
  remove: string[];
  /** Job locks to release: the workers of replicas lost with their host. */
  releaseLocks: Array<{ deployment: string; workerId: string }>;
  statuses: DeploymentStatusRecord[];
  /** Deleted deployments that are fully gone: drop their status, autoscaler state and queue. */
  forget: string[];
  autoscaler: Map<string, AutoscalerState>;
  events: Array<{ deployment: string; message: string; level: "info" | "warn" }>;
}

/** Back-off after consecutive failed starts: 1 s, 2 s, 4 s, … capped at 60 s. */
export function backoffMs(failures: number): number {
  return failures <= 0 ? 0 : Math.min(60_000, 1000 * 2 ** (failures - 1));
}

/** The resources one replica of a deployment reserves. */
export function replicaResources(record: DeploymentRecord): ResourceSet {
  const o = record.spec.actorOptions;
  return { CPU: o.numCpus, GPU: o.numGpus, ...o.resources };
}

function phaseOf(a: ReplicaAssignment, status: ReplicaStatus | undefined): PlannerReplica["phase"] {
  if (a.desired === "drain" || status?.state === "draining") return "draining";
  if (a.host === null) return "pending";
  if (status?.state === "running" || status?.state === "reconfiguring") return "serving";
  return "starting";
}

export function reconcile(state: ObservedState, newId: (deployment: string) => string): Decisions {
  const { now } = state;
  const out: Decisions = { upsert: [], remove: [], releaseLocks: [], statuses: [], forget: [], autoscaler: new Map(), events: [] };
  const aliveHosts = new Map(state.hosts.filter((h) => h.alive).map((h) => [h.id, h]));
  const byDeployment = new Map<string, ReplicaAssignment[]>();
  for (const a of state.assignments.values()) {
    const list = byDeployment.get(a.deployment);
    if (list) list.push(a);
    else byDeployment.set(a.deployment, [a]);
  }
  /** Every replica that stays (existing ones not removed, and new ones), for placement. */
  const kept: ReplicaAssignment[] = [];
  /** Ids in `kept` removed later in the tick (a drained replica that never had a host). */
  const dropped = new Set<string>();
  const upserts = new Map<string, ReplicaAssignment>();
  /** Replicas without a host: the only ones placement can act on. */
  const unplaced: ReplicaAssignment[] = [];
  /** Assignments that have a status: when this is every status, no status is left over. */
  let withStatus = 0;

  const names = new Set(state.deployments.keys());
  for (const name of byDeployment.keys()) names.add(name);
  for (const name of state.previousStatus.keys()) names.add(name);
  for (const name of names) {
    const record = state.deployments.get(name);
    const prev = state.previousStatus.get(name);
    let failures = prev && record && prev.codeVersion === record.codeVersion ? prev.failures : 0;
    let lastError = prev && record && prev.codeVersion === record.codeVersion ? prev.lastError : undefined;
    let newFailures = 0;
    const planned: PlannerReplica[] = [];
    const live: ReplicaAssignment[] = [];

    for (const a of byDeployment.get(name) ?? []) {
      const status = state.replicaStatus.get(a.id);
      if (status) withStatus++;
      const host = a.host === null ? undefined : aliveHosts.get(a.host);
      if (a.host !== null && !host) {
        out.remove.push(a.id);
        if (status?.workerId) out.releaseLocks.push({ deployment: name, workerId: status.workerId });
        out.events.push({ deployment: name, level: "warn", message: `replica ${a.id} lost with host ${a.host}; replacing it` });
        continue;
      }
      // A drained replica without a status never ran: its host saw it only after its version was
      // replaced, and hosts start only current versions. (Had it just started, its host drains it
      // when the assignment goes.) Waiting for it to report would wait forever.
      if (status?.state === "failed" || status?.state === "stopped" || (a.desired === "drain" && (a.host === null || status === undefined))) {
        out.remove.push(a.id);
        if (status?.state === "failed" && a.desired === "run" && record && status.codeVersion === record.codeVersion) {
          newFailures++;
          lastError = status.error ?? "replica failed";
          out.events.push({ deployment: name, level: "warn", message: `replica ${a.id} failed: ${lastError}` });
        }
        continue;
      }
      live.push(a);
      kept.push(a);
      if (a.host === null) unplaced.push(a);
      // Replicas on a draining host are replaced like an old version: successors first, then drain.
      const codeVersion = host?.draining ? `${a.codeVersion}@draining-host` : a.codeVersion;
      planned.push({ id: a.id, codeVersion, phase: phaseOf(a, status), inflight: status?.inflight ?? 0, createdAt: a.createdAt });
    }

    if (!record) {
      for (const a of live) if (a.desired !== "drain") upserts.set(a.id, { ...a, desired: "drain" });
      if (live.length === 0) out.forget.push(name);
      else out.statuses.push(statusRecord(name, "DELETING", `draining ${live.length} replica(s)`, 0, prev?.codeVersion ?? "", now));
      continue;
    }

    const serving = planned.filter((r) => r.phase === "serving");
    let target = record.spec.numReplicas ?? 0;
    let autoscaling: DeploymentStatusRecord["autoscaling"];
    const cfg = record.spec.autoscalingConfig;
    if (cfg) {
      const previousTarget = prev?.targetReplicas ?? cfg.initialReplicas;
      target = Math.min(cfg.maxReplicas, Math.max(cfg.minReplicas, previousTarget));
      autoscaling = prev?.autoscaling ? { ...prev.autoscaling } : { demand: 0, desired: target };
      const st = state.autoscaler.get(name) ?? initialAutoscalerState();
      const lastAt = st.samples[st.samples.length - 1]?.at;
      if (lastAt === undefined || now - lastAt >= cfg.metricsIntervalS * 1000 - 1) {
        const q: QueueDepth = state.queues.get(name) ?? { waiting: 0, active: 0, failed: 0 };
        // Replicas count requests in flight one by one, also those that came in one batch job.
        const inflight = live.reduce((sum, a) => sum + (state.replicaStatus.get(a.id)?.inflight ?? 0), 0);
        // Jobs in the queue, or the requests waited on as their requesters count them (batch jobs carry many),
        // whichever is more: jobs added by other producers are seen only in the queue.
        const demand = Math.max(q.waiting + Math.max(q.active, inflight), q.requested ?? 0);
        const result = autoscale(st, { config: cfg, now, demand, currentTarget: target, readyReplicas: Math.min(serving.length, target) });
        out.autoscaler.set(name, result.state);
        autoscaling = { demand: result.avgDemand, desired: result.desired, ...(autoscaling.lastDecision ? { lastDecision: autoscaling.lastDecision } : {}) };
        if (result.decision) {
          const d = result.decision;
          autoscaling.lastDecision = { at: d.at, from: d.from, to: d.to, reason: d.reason };
          out.events.push({ deployment: name, level: "info", message: `autoscaler: ${d.from} → ${d.to} replicas (${d.reason})` });
          target = result.target;
        }
      }
    }

    if (newFailures > 0) failures += newFailures;
    // A new version starts with a clean slate: it never waits out the back-off of the one it replaces.
    const retryAt = newFailures > 0 ? now + backoffMs(failures) : prev?.codeVersion === record.codeVersion ? prev.retryAt : 0;
    const decision = planRollout({ target, codeVersion: record.codeVersion, replicas: planned, canStart: now >= retryAt });
    if (decision.drain.length > 0) {
      const byId = new Map(live.map((a) => [a.id, a]));
      for (const id of decision.drain) {
        const a = byId.get(id);
        if (!a) continue;
        if (a.host === null) {
          out.remove.push(id);
          dropped.add(id);
        } else upserts.set(id, { ...a, desired: "drain" });
      }
    }
    for (let i = 0; i < decision.start; i++) {
      const a: ReplicaAssignment = { id: newId(name), deployment: name, codeVersion: record.codeVersion, version: record.spec.version ?? record.codeVersion, host: null, desired: "run", resources: replicaResources(record), gpuIds: [], createdAt: now };
      kept.push(a);
      upserts.set(a.id, a);
      unplaced.push(a);
    }

    const servingCurrent = serving.filter((r) => r.codeVersion === record.codeVersion).length;
    const oldLeft = planned.some((r) => r.codeVersion !== record.codeVersion && r.phase !== "draining" && !decision.drain.includes(r.id));
    if (servingCurrent >= target && !oldLeft && newFailures === 0) {
      failures = 0;
      lastError = undefined;
    }
    let health: DeploymentStatusRecord["status"];
    let message: string;
    if (failures > 0 && servingCurrent < target) {
      health = "UNHEALTHY";
      const wait = Math.max(0, Math.ceil((retryAt - now) / 1000));
      message = `${failures} failed start(s) of this version: ${lastError ?? "replica failed"}; next attempt in ${wait} s`;
    } else if (servingCurrent === target && !oldLeft) {
      health = "HEALTHY";
      message = `${servingCurrent}/${target} replicas running`;
    } else {
      health = "UPDATING";
      message = `${servingCurrent}/${target} replicas running the current version`;
    }
    const status = statusRecord(name, health, message, target, record.codeVersion, now);
    status.generation = record.generation;
    status.failures = failures;
    status.retryAt = retryAt;
    if (lastError) status.lastError = lastError;
    if (autoscaling) status.autoscaling = autoscaling;
    out.statuses.push(status);
  }

  // A status whose assignment is gone is left over (hosts only write statuses of assigned replicas).
  if (withStatus < state.replicaStatus.size) for (const id of state.replicaStatus.keys()) if (!state.assignments.has(id)) out.remove.push(id);

  placeAll(
    aliveHosts,
    unplaced.filter((a) => !dropped.has(a.id)),
    dropped.size > 0 ? kept.filter((a) => !dropped.has(a.id)) : kept,
    upserts,
    out.statuses,
  );
  out.upsert = [...upserts.values()];
  return out;
}

function statusRecord(name: string, status: DeploymentStatusRecord["status"], message: string, target: number, codeVersion: string, now: number): DeploymentStatusRecord {
  return { name, status, message, targetReplicas: target, codeVersion, generation: 0, failures: 0, retryAt: 0, updatedAt: now };
}

const hasHost = (a: ReplicaAssignment): a is ReplicaAssignment & { host: string } => a.host !== null;

/** Places every pending replica that wants to run; records why the others stay pending. */
function placeAll(
  aliveHosts: ReadonlyMap<string, HostInfo & { alive: boolean }>,
  unplaced: readonly ReplicaAssignment[],
  kept: readonly ReplicaAssignment[],
  upserts: Map<string, ReplicaAssignment>,
  statuses: DeploymentStatusRecord[],
): void {
  /** What placement is asked, each with the assignment it is for. */
  const requests: Array<PlacementRequest & { createdAt: number; assignment: ReplicaAssignment }> = [];
  for (const a of unplaced) {
    const current = upserts.get(a.id) ?? a;
    if (current.host === null && current.desired === "run") requests.push({ id: a.id, deployment: a.deployment, resources: current.resources, createdAt: a.createdAt, assignment: current });
  }
  if (requests.length === 0) return;
  const hosts: HostCapacity[] = [...aliveHosts.values()].map((h) => ({ id: h.id, total: h.resources, gpuDevices: h.gpuDevices, schedulable: !h.draining }));
  // Nothing decided so far moves a replica or changes what it holds (a drain keeps its host), so the
  // assignments as read say what each host holds.
  const existing: PlacedReplica[] = kept.filter(hasHost);
  requests.sort((x, y) => x.createdAt - y.createdAt);
  const result = place(hosts, existing, requests);
  // Placed and pending are each in request order and hold every request between them: walk all three together.
  const reasons = new Map<string, string[]>();
  let placedAt = 0;
  let pendingAt = 0;
  for (const { id, assignment: a } of requests) {
    const placed = result.placed[placedAt];
    if (placed?.id === id) {
      placedAt++;
      const next: ReplicaAssignment = { ...a, host: placed.host, gpuIds: placed.gpuIds };
      if (next.pendingReason !== undefined) delete next.pendingReason;
      upserts.set(id, next);
      continue;
    }
    const pending = result.pending[pendingAt++];
    if (pending?.id !== id) throw new Error(`placement left replica ${id} out of its answer`);
    if (a.pendingReason !== pending.reason) upserts.set(id, { ...a, pendingReason: pending.reason });
    const list = reasons.get(a.deployment);
    if (list) list.push(pending.reason);
    else reasons.set(a.deployment, [pending.reason]);
  }
  // A draining host's replicas wait for successors elsewhere; where a successor cannot be placed,
  // waiting helps nobody (the host is going away), so they drain now.
  const drainingHosts = new Set([...aliveHosts.values()].filter((h) => h.draining).map((h) => h.id));
  if (drainingHosts.size > 0) {
    const unplaced = new Map<string, number>();
    for (const [name, list] of reasons) unplaced.set(name, list.length);
    for (const a of kept) {
      const current = upserts.get(a.id) ?? a;
      const left = unplaced.get(a.deployment) ?? 0;
      if (left > 0 && current.host !== null && drainingHosts.has(current.host) && current.desired === "run") {
        upserts.set(a.id, { ...current, desired: "drain" });
        unplaced.set(a.deployment, left - 1);
      }
    }
  }
  for (const s of statuses) {
    const list = reasons.get(s.name);
    if (!list) continue;
    s.pendingReasons = [...new Set(list)];
    s.message += `; ${list.length} pending: ${s.pendingReasons.join("; ")}`;
  }
}
