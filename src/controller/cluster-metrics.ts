/**
 * The controller's Prometheus gauges: a pure view of the same StatusReport as
 * `GET /api/status`, set afresh on every scrape of the admin API's /metrics,
 * plus Node's default process metrics.
 */
import { collectDefaultMetrics, Counter, Gauge, Registry } from "prom-client";
import { REPLACEMENT_KINDS } from "../shared/health-events.js";
import type { StatusReport } from "../client/cluster-status.js";
import { REPLICA_STATES, type DeploymentHealth } from "../shared/records.js";

export interface Sample {
  labels: Record<string, string>;
  value: number;
}

/** Every cluster gauge: name → [help, label names]. */
const GAUGES = {
  flotilla_deployment_target_replicas: ["Replicas the controller aims for", ["deployment"]],
  flotilla_deployment_replicas: ["Replicas by lifecycle state", ["deployment", "state"]],
  flotilla_deployment_status: ["1 for the deployment's current status, 0 for the others", ["deployment", "status"]],
  flotilla_queue_waiting: ["Requests queued, not yet taken by a replica", ["deployment"]],
  flotilla_queue_active: ["Requests a replica is running", ["deployment"]],
  flotilla_autoscaler_demand: ["The autoscaler's smoothed demand (autoscaled deployments only)", ["deployment"]],
  flotilla_autoscaler_desired_replicas: ["Replicas the autoscaler asks for (autoscaled deployments only)", ["deployment"]],
  flotilla_hosts: ["Hosts listed, by liveness", ["alive"]],
  flotilla_host_resource_total: ["Resources a live host offers", ["host", "resource"]],
  flotilla_host_resource_free: ["Resources of a live host not held by its replicas", ["host", "resource"]],
  flotilla_pending_demand: ["Resources the pending replicas need in total: what more hosts must offer", ["resource"]],
  flotilla_controllers: ["Controllers listed, by liveness", ["alive"]],
  flotilla_routers: ["Routers listed, by liveness", ["alive"]],
  flotilla_controller_leader: ["1 while this controller process holds the leader lease", []],
} as const satisfies Record<string, readonly [string, readonly string[]]>;

export type ClusterGauge = keyof typeof GAUGES;

/** Counters kept in Redis by the hosts (see health-events.ts) and by async requests' records, exported as they stand: name → [help, label names]. */
const COUNTERS = {
  flotilla_health_check_failures_total: ["Failed checkHealth() calls (a timeout counts), counted by the replicas' hosts", ["deployment"]],
  flotilla_async_requests_total: ["Async requests that reached each status: queued (submitted), succeeded, failed, cancelled", ["deployment", "status"]],
  flotilla_replica_replacements_total: ["Live replicas replaced by their host, by reason: health (checks failed), liveness (event loop blocked), memory (over memoryMiB)", ["deployment", "reason"]],
} as const satisfies Record<string, readonly [string, readonly string[]]>;

export type ClusterCounter = keyof typeof COUNTERS;

/** The statuses async requests are counted in (running is a passage, not an outcome). */
const ASYNC_COUNTED = ["queued", "succeeded", "failed", "cancelled"] as const;

/** The value of every health counter for one report; deployments with no health events get zeros. */
export function healthSamples(report: StatusReport): Record<ClusterCounter, Sample[]> {
  const out: Record<ClusterCounter, Sample[]> = { flotilla_health_check_failures_total: [], flotilla_async_requests_total: [], flotilla_replica_replacements_total: [] };
  for (const d of report.deployments) {
    const c = d.healthCounts;
    out.flotilla_health_check_failures_total.push({ labels: { deployment: d.name }, value: c?.checkFailures ?? 0 });
    for (const status of ASYNC_COUNTED) out.flotilla_async_requests_total.push({ labels: { deployment: d.name, status }, value: d.asyncCounts?.[status] ?? 0 });
    for (const reason of REPLACEMENT_KINDS) {
      out.flotilla_replica_replacements_total.push({ labels: { deployment: d.name, reason }, value: c?.replacements[reason] ?? 0 });
    }
  }
  return out;
}

const HEALTH: readonly DeploymentHealth[] = ["HEALTHY", "UPDATING", "UNHEALTHY", "DELETING"];

/** The value of every cluster gauge for one report. Enumerable labels (state, status, alive) get explicit zeros. */
export function clusterSamples(report: StatusReport, leader: boolean): Record<ClusterGauge, Sample[]> {
  const out = Object.fromEntries(Object.keys(GAUGES).map((name) => [name, []])) as unknown as Record<ClusterGauge, Sample[]>;
  const add = (name: ClusterGauge, labels: Record<string, string>, value: number): void => {
    out[name].push({ labels, value });
  };

  for (const d of report.deployments) {
    const deployment = d.name;
    add("flotilla_deployment_target_replicas", { deployment }, d.targetReplicas);
    const states = new Map<string, number>(REPLICA_STATES.map((s) => [s, 0]));
    for (const r of d.replicas) states.set(r.state, (states.get(r.state) ?? 0) + 1);
    for (const [state, n] of states) add("flotilla_deployment_replicas", { deployment, state }, n);
    for (const status of new Set<string>([...HEALTH, d.status])) add("flotilla_deployment_status", { deployment, status }, status === d.status ? 1 : 0);
    add("flotilla_queue_waiting", { deployment }, d.queue.waiting);
    add("flotilla_queue_active", { deployment }, d.queue.active);
    if (d.autoscaling) {
      add("flotilla_autoscaler_demand", { deployment }, d.autoscaling.demand);
      add("flotilla_autoscaler_desired_replicas", { deployment }, d.autoscaling.desired);
    }
  }

  const byLiveness = (name: ClusterGauge, items: ReadonlyArray<{ alive: boolean }>): void => {
    const alive = items.filter((i) => i.alive).length;
    add(name, { alive: "true" }, alive);
    add(name, { alive: "false" }, items.length - alive);
  };
  byLiveness("flotilla_hosts", report.hosts);
  // A dead host stays listed for a while; its capacity is not the cluster's.
  for (const h of report.hosts.filter((x) => x.alive)) {
    for (const [resource, value] of Object.entries(h.resources.total)) add("flotilla_host_resource_total", { host: h.id, resource }, value);
    for (const [resource, value] of Object.entries(h.resources.free)) add("flotilla_host_resource_free", { host: h.id, resource }, value);
  }
  for (const [resource, value] of Object.entries({ CPU: 0, GPU: 0, ...report.pendingDemand })) add("flotilla_pending_demand", { resource }, value);
  byLiveness("flotilla_controllers", report.controllers);
  byLiveness("flotilla_routers", report.routers);
  add("flotilla_controller_leader", {}, leader ? 1 : 0);
  return out;
}

/** A registry of its own (never prom-client's global one) holding the cluster gauges. */
export class ClusterMetrics {
  readonly registry = new Registry();
  private readonly gauges: Array<[ClusterGauge, Gauge]>;
  private readonly counters: Array<[ClusterCounter, Counter]>;

  /** @param processMetrics also export Node's default process metrics. @default true */
  constructor(processMetrics = true) {
    this.gauges = Object.entries(GAUGES).map(([name, [help, labelNames]]) => [
      name as ClusterGauge,
      new Gauge({ name, help, labelNames: [...labelNames], registers: [this.registry] }),
    ]);
    this.counters = Object.entries(COUNTERS).map(([name, [help, labelNames]]) => [
      name as ClusterCounter,
      new Counter({ name, help, labelNames: [...labelNames], registers: [this.registry] }),
    ]);
    if (processMetrics) collectDefaultMetrics({ register: this.registry });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** Sets every gauge from the report (series gone from it disappear) and renders the exposition text. */
  async render(report: StatusReport, leader: boolean): Promise<string> {
    const samples = clusterSamples(report, leader);
    for (const [name, gauge] of this.gauges) {
      gauge.reset();
      for (const s of samples[name]) gauge.set(s.labels, s.value);
    }
    const counts = healthSamples(report);
    for (const [name, counter] of this.counters) {
      // The totals live in Redis: each scrape sets them afresh.
      counter.reset();
      for (const s of counts[name]) counter.inc(s.labels, s.value);
    }
    return this.registry.metrics();
  }
}
