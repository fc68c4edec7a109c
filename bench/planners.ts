/**
 * Control-plane scale: one controller tick's decision time (the pure
 * reconcile: rollout planning, autoscaling and placement together) for 1,000
 * deployments × 10 replicas on 100 hosts, in three situations: a cold start
 * (every replica to place), steady state, and a rolling update of everything.
 * No Redis: reading and writing the state is not counted.
 */
import { initialAutoscalerState, type AutoscalerState } from "../src/autoscaler/policy.js";
import { reconcile, type ObservedState } from "../src/controller/reconcile.js";
import type { DeploymentRecord, HostInfo, ReplicaAssignment, ReplicaStatus } from "../src/shared/records.js";
import { parseDeploymentSpec } from "../src/spec/deployment-spec.js";

export interface PlannerTiming {
  scenario: string;
  deployments: number;
  replicas: number;
  hosts: number;
  /** The very first tick of the scenario, before V8 has optimized the planners. */
  firstMs: number;
  /** Over the measured ticks, after the warm-up ones. */
  medianMs: number;
  maxMs: number;
  decisions: number;
}

/**
 * Ticks run and not counted before measuring: a controller ticks every 500 ms,
 * so within its first seconds it runs optimized code. The first tick of each
 * scenario is reported on its own.
 */
const WARMUP_TICKS = 5;

const DEPLOYMENTS = 1000;
const REPLICAS = 10;
const HOSTS = 100;

function hosts(): Array<HostInfo & { alive: boolean }> {
  return Array.from({ length: HOSTS }, (_, i) => ({
    id: `host-${i}`,
    hostname: `host-${i}`,
    pid: 1,
    resources: { CPU: 64, GPU: i % 10 === 0 ? 8 : 0 },
    gpuDevices: i % 10 === 0 ? 8 : 0,
    startedAt: 0,
    lastHeartbeatAt: 0,
    draining: false,
    emptySince: null,
    alive: true,
  }));
}

function deployments(version: string): Map<string, DeploymentRecord> {
  const out = new Map<string, DeploymentRecord>();
  for (let d = 0; d < DEPLOYMENTS; d++) {
    const autoscaled = d % 10 === 0;
    const spec = parseDeploymentSpec({
      name: `d${d}`,
      import: "app.ts",
      version,
      ...(autoscaled ? { autoscalingConfig: { minReplicas: REPLICAS, maxReplicas: 20 } } : { numReplicas: REPLICAS }),
      actorOptions: { numCpus: 0.5, numGpus: d % 50 === 0 ? 0.5 : 0 },
    });
    out.set(spec.name, { spec, codeVersion: version, configVersion: "c", generation: 1, deployedAt: 0 });
  }
  return out;
}

function state(records: Map<string, DeploymentRecord>, assignments: Map<string, ReplicaAssignment>, statuses: Map<string, ReplicaStatus>, now: number): ObservedState {
  const autoscaler = new Map<string, AutoscalerState>();
  for (const name of records.keys()) autoscaler.set(name, initialAutoscalerState());
  return {
    now,
    deployments: records,
    memory: new Map(),
    hosts: hosts(),
    assignments,
    replicaStatus: statuses,
    queues: new Map([...records.keys()].map((n) => [n, { waiting: 3, active: 5, failed: 0 }])),
    autoscaler,
  };
}

function time(scenario: string, make: () => ObservedState, rounds: number): PlannerTiming {
  const samples: number[] = [];
  let decisions = 0;
  let counter = 0;
  let firstMs = 0;
  for (let i = 0; i < WARMUP_TICKS + rounds; i++) {
    const s = make();
    const t0 = performance.now();
    const d = reconcile(s, (name) => `${name}-${counter++}`);
    const ms = performance.now() - t0;
    if (i === 0) firstMs = ms;
    if (i >= WARMUP_TICKS) samples.push(ms);
    decisions = d.upsert.length + d.remove.length;
  }
  samples.sort((a, b) => a - b);
  const replicas = DEPLOYMENTS * REPLICAS;
  return {
    scenario,
    deployments: DEPLOYMENTS,
    replicas,
    hosts: HOSTS,
    firstMs: round(firstMs),
    medianMs: round(samples[Math.floor(samples.length / 2)] ?? 0),
    maxMs: round(samples[samples.length - 1] ?? 0),
    decisions,
  };
}

const round = (n: number): number => Math.round(n * 100) / 100;

/** Runs every scenario a few times and returns the timings. */
export function benchPlanners(rounds = 15): PlannerTiming[] {
  const v1 = deployments("v1");
  // A converged cluster: every replica placed and running.
  const first = reconcile(state(v1, new Map(), new Map(), 1000), (() => {
    let n = 0;
    return (name: string) => `${name}-${n++}`;
  })());
  const assignments = new Map(first.upsert.map((a) => [a.id, a]));
  const statuses = new Map<string, ReplicaStatus>(
    first.upsert.map((a) => [a.id, { id: a.id, deployment: a.deployment, host: a.host ?? "", state: "running", codeVersion: a.codeVersion, configVersion: "c", pid: 1, workerId: "w", inflight: 1, startedAt: 0, updatedAt: 0 }]),
  );
  const v2 = deployments("v2");
  return [
    time("cold start: place 10,000 replicas", () => state(v1, new Map(), new Map(), 1000), rounds),
    // The cluster has GPUs for 160 of the 200 GPU replicas: 40 stay pending, and every tick tries to place them again.
    time("steady state: nothing to change, 40 replicas pending", () => state(v1, assignments, statuses, 2000), rounds),
    time("rolling update of every deployment", () => state(v2, assignments, statuses, 3000), rounds),
  ];
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const t of benchPlanners()) console.log(`${t.scenario}: median ${t.medianMs} ms, max ${t.maxMs} ms, first tick ${t.firstMs} ms (${t.decisions} decisions)`);
}
