/**
 * What `flotilla status` shows: a pure view built from a cluster snapshot.
 * The JSON shape is a public contract (`status --json`, `GET /api/status`).
 */
import { freeResources } from "../shared/resource-ledger.js";
import type { ReplicaState, ResourceSet } from "../shared/records.js";
import { describePending } from "../shared/resources.js";
import type { ClusterSnapshot } from "./cluster-state.js";
import { replicaVersionLabel, versionLabel } from "../spec/version-label.js";
import type { HealthCounts } from "../shared/health-events.js";
import type { AsyncStatus } from "../queue/async-requests.js";
import type { ReplacementEvent, Replacement, ReplicaHealth } from "../shared/records.js";

export interface ReplicaView {
  id: string;
  host: string | null;
  state: ReplicaState;
  version: string;
  codeVersion: string;
  pid: number | null;
  inflight: number;
  error?: string;
  /** What a starting replica is doing before its process starts (fetching its package, installing dependencies). */
  note?: string;
  pendingReason?: string;
  /** Its checkHealth() results: last check, consecutive failures, last error. */
  health?: ReplicaHealth;
  /** Why its host is replacing it. */
  replacement?: Replacement;
}

export interface DeploymentView {
  name: string;
  version: string;
  codeVersion: string;
  status: string;
  message: string;
  targetReplicas: number;
  routePrefix: string | null;
  /** The runtimeEnv package the deployment runs: its sha256 and size in bytes. */
  runtimeEnv?: { hash: string; bytes: number };
  queue: { waiting: number; active: number };
  /** Replicas per code version, not counting stopped or failed ones. */
  versions: Record<string, number>;
  autoscaling?: { demand: number; desired: number; actual: number; lastDecision?: { at: number; from: number; to: number; reason: string } };
  replicas: ReplicaView[];
  /** Failed health checks and replacements of live replicas by kind (counted by hosts); absent while there were none. */
  healthCounts?: HealthCounts;
  /** Async requests that reached each status (queued counts submissions); absent while there were none. */
  asyncCounts?: Record<AsyncStatus, number>;
  /** The latest replacements, newest first; absent while there were none. */
  replacements?: Array<Omit<ReplacementEvent, "deployment">>;
  /**
   * Requests per second queued for it by every router and handle, averaged over the last 5 s that all of them
   * have reported (so about 3 s behind): requests, not queue jobs, so a batch job of 64 requests counts 64.
   */
  requestsPerS?: number;
  /** Requests queued for it in all (every router and handle, since the counts began). */
  requestsTotal?: number;
}

/** Replacements listed per deployment. */
const SHOWN_REPLACEMENTS = 10;

export interface HostView {
  id: string;
  alive: boolean;
  draining: boolean;
  resources: { total: ResourceSet; free: ResourceSet };
  replicas: string[];
  /** Seconds it has run no replica (null while it runs some): a host empty for a while can be removed. */
  emptyForS: number | null;
}

export interface StatusReport {
  namespace: string;
  deployments: DeploymentView[];
  hosts: HostView[];
  controllers: Array<{ id: string; leader: boolean; alive: boolean }>;
  routers: Array<{ id: string; port: number; alive: boolean }>;
  /** Resources the pending replicas need in total: what more hosts must offer. */
  pendingDemand: ResourceSet;
}

function healthOf(snap: ClusterSnapshot, name: string): Pick<DeploymentView, "healthCounts" | "replacements"> {
  const counts = snap.health?.counts.get(name);
  const recent = (snap.health?.recent ?? []).filter((e) => e.deployment === name).slice(0, SHOWN_REPLACEMENTS);
  return {
    ...(counts ? { healthCounts: counts } : {}),
    ...(recent.length > 0 ? { replacements: recent.map(({ deployment: _d, ...e }) => e) } : {}),
  };
}

export function buildStatus(namespace: string, snap: ClusterSnapshot): StatusReport {
  const replicasByDeployment = new Map<string, ReplicaView[]>();
  const pendingDemand: ResourceSet = {};
  for (const a of snap.assignments.values()) {
    const s = snap.replicaStatus.get(a.id);
    let state: ReplicaState = a.host === null ? "pending" : (s?.state ?? "starting");
    if (a.desired === "drain" && (state === "running" || state === "reconfiguring" || state === "starting")) state = "draining";
    const record = snap.deployments.get(a.deployment);
    const version = replicaVersionLabel(a, record);
    const view: ReplicaView = {
      id: a.id,
      host: a.host,
      state,
      version,
      codeVersion: a.codeVersion,
      pid: s?.pid ?? null,
      inflight: s?.inflight ?? 0,
      ...(s?.error ? { error: s.error } : {}),
      ...(s?.note && state === "starting" ? { note: s.note } : {}),
      ...(a.host === null && a.pendingReason ? { pendingReason: describePending(a.pendingReason) } : {}),
      ...(s?.health ? { health: s.health } : {}),
      ...(s?.replacement ? { replacement: s.replacement } : {}),
    };
    if (a.host === null && a.desired === "run") {
      for (const [k, v] of Object.entries(a.resources)) if (v > 0) pendingDemand[k] = (pendingDemand[k] ?? 0) + v;
    }
    const list = replicasByDeployment.get(a.deployment) ?? [];
    list.push(view);
    replicasByDeployment.set(a.deployment, list);
  }

  const deployments: DeploymentView[] = [];
  for (const [name, record] of snap.deployments) {
    const st = snap.statuses.get(name);
    const replicas = (replicasByDeployment.get(name) ?? []).sort((x, y) => x.id.localeCompare(y.id));
    const versions: Record<string, number> = {};
    for (const r of replicas) if (r.state !== "stopped" && r.state !== "failed") versions[r.version] = (versions[r.version] ?? 0) + 1;
    const q = snap.queues.get(name) ?? { waiting: 0, active: 0 };
    const current = st && st.generation >= record.generation;
    const running = replicas.filter((r) => r.state === "running" || r.state === "reconfiguring").length;
    deployments.push({
      name,
      version: versionLabel(record),
      codeVersion: record.codeVersion,
      status: current ? st.status : "UPDATING",
      message: current ? st.message : "waiting for a controller to apply the new spec",
      targetReplicas: st?.targetReplicas ?? record.spec.numReplicas ?? record.spec.autoscalingConfig?.initialReplicas ?? 0,
      routePrefix: record.spec.routePrefix,
      ...(record.runtimeEnv ? { runtimeEnv: { hash: record.runtimeEnv.hash, bytes: record.runtimeEnv.bytes } } : {}),
      queue: { waiting: q.waiting, active: q.active },
      versions,
      ...(record.spec.autoscalingConfig && st?.autoscaling ? { autoscaling: { ...st.autoscaling, actual: running } } : {}),
      replicas,
      ...healthOf(snap, name),
      ...(snap.asyncCounts?.has(name) ? { asyncCounts: snap.asyncCounts.get(name) } : {}),
      ...(snap.requestRates ? { requestsPerS: snap.requestRates.perS.get(name) ?? 0, requestsTotal: snap.requestRates.total.get(name) ?? 0 } : {}),
    });
  }
  deployments.sort((a, b) => a.name.localeCompare(b.name));

  const free = freeResources(
    snap.hosts.map((h) => ({ id: h.id, total: h.resources, gpuDevices: h.gpuDevices, schedulable: h.alive && !h.draining })),
    [...snap.assignments.values()].filter((a) => a.host !== null).map((a) => ({ id: a.id, deployment: a.deployment, host: a.host as string, resources: a.resources, gpuIds: a.gpuIds })),
  );
  const hosts: HostView[] = snap.hosts
    .map((h) => ({
      id: h.id,
      alive: h.alive,
      draining: h.draining,
      resources: { total: h.resources, free: free.get(h.id) ?? h.resources },
      replicas: [...snap.assignments.values()].filter((a) => a.host === h.id).map((a) => a.id).sort(),
      emptyForS: h.alive && h.emptySince != null ? Math.max(0, Math.round((snap.now - h.emptySince) / 1000)) : null,
    }))
    .sort((a, b) => a.id.localeCompare(b.id));

  return {
    namespace,
    deployments,
    hosts,
    controllers: snap.controllers.map((c) => ({ id: c.id, leader: c.leader && c.alive, alive: c.alive })).sort((a, b) => a.id.localeCompare(b.id)),
    routers: snap.routers.map((r) => ({ id: r.id, port: r.port, alive: r.alive })).sort((a, b) => a.id.localeCompare(b.id)),
    pendingDemand,
  };
}
