/**
 * `npm run bench:fleet -- --hosts N --deployments D --replicas R`: the control
 * plane at fleet size. One process runs a leader controller, a standby, a
 * router and N host agents with simulated replica processes, against a
 * private redis-server. It measures, from Redis's own counters, what the
 * cluster costs Redis in steady state and during a rolling update of every
 * deployment, the leader's tick times, how long a deploy and a rollout take
 * to have every replica running, and how long a new leader takes over after
 * the leader dies. Results: a table on stdout, JSON in bench-results/fleet.json.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { applyDeployments, codeVersionOf } from "../../src/client/deployment-store.js";
import { Keys } from "../../src/shared/keys.js";
import { parseDeploymentSpec, type DeploymentSpec } from "../../src/spec/deployment-spec.js";
import { killAllNow } from "../proc.js";
import { openBenchRedis, type BenchRedis } from "../redis-server.js";
import { sleep } from "../wait.js";
import { FleetCluster, type RecordedTick } from "./fleet-cluster.js";
import { parseFleetOptions, type FleetOptions } from "./fleet-options.js";
import { printTable, type FleetResult, type TickFigures, type WindowFigures } from "./fleet-report.js";
import { counters, quantile, ratesBetween, type Counters } from "./redis-counters.js";

const NAMESPACE = "fleet";

function specs(options: FleetOptions, version: string): DeploymentSpec[] {
  return Array.from({ length: options.deployments }, (_, i) =>
    parseDeploymentSpec({ name: `d${String(i).padStart(5, "0")}`, import: "sim.js", version, numReplicas: options.replicas, actorOptions: { numCpus: 1 } }),
  );
}

function progress(text: string): void {
  process.stderr.write(`[fleet ${new Date().toISOString().slice(11, 19)}] ${text}\n`);
}

/** Seconds until every deployment runs its replicas at its code version and nothing else is alive; null on timeout. */
async function converge(cluster: FleetCluster, applied: readonly DeploymentSpec[], options: FleetOptions, startedAt: number): Promise<number | null> {
  const versions = new Map(applied.map((s) => [s.name, codeVersionOf(s)]));
  const deadline = startedAt + options.convergeTimeoutS * 1000;
  let lastReport = 0;
  for (;;) {
    const { current, other } = await cluster.census(versions);
    let running = 0;
    for (const n of current.values()) running += Math.min(n, options.replicas);
    const target = options.deployments * options.replicas;
    if (running === target && other === 0 && [...current.values()].every((n) => n === options.replicas)) return (performance.now() - startedAt) / 1000;
    if (performance.now() > deadline) {
      progress(`not converged after ${options.convergeTimeoutS} s: ${running}/${target} running, ${other} of other versions alive`);
      return null;
    }
    if (performance.now() - lastReport > 10_000) {
      lastReport = performance.now();
      progress(`${running}/${target} running at the current version, ${other} of other versions alive`);
    }
    await sleep(100);
  }
}

function tickFigures(ticks: readonly RecordedTick[]): TickFigures {
  const ms = ticks.filter((t) => t.ok).map((t) => t.ms);
  return { count: ms.length, medianMs: quantile(ms, 0.5), p99Ms: quantile(ms, 0.99), maxMs: ms.length ? Math.max(...ms) : NaN };
}

function windowFigures(before: Counters, after: Counters, hosts: number, ticks: readonly RecordedTick[]): WindowFigures {
  const rates = ratesBetween(before, after);
  const inWindow = ticks.filter((t) => t.at >= before.at && t.at <= after.at);
  return {
    seconds: rates.seconds,
    redisCmdsPerS: rates.cmdsPerS,
    redisNetOutBytesPerS: rates.netOutBytesPerS,
    perHostCmdsPerS: rates.cmdsPerS / hosts,
    perHostNetOutBytesPerS: rates.netOutBytesPerS / hosts,
    redisCpuPct: rates.cpuPct,
    topCommands: rates.topCommands,
    tick: tickFigures(inWindow),
  };
}

async function run(options: FleetOptions, redis: BenchRedis): Promise<FleetResult> {
  const cluster = new FleetCluster(options, redis.url, NAMESPACE);
  const startedAt = new Date().toISOString();
  try {
    progress(`starting ${options.hosts} hosts, 2 controllers and a router on ${redis.url}`);
    await cluster.startHosts();
    await cluster.startController("ctl-a");
    await cluster.leaderTickAfter(0, 30_000);
    await cluster.startController("ctl-b");
    await cluster.startRouter();

    const keys = new Keys(NAMESPACE);
    const v1 = specs(options, "v1");
    progress(`deploying ${options.deployments} deployments × ${options.replicas} replicas`);
    const deployAt = performance.now();
    await applyDeployments(redis.client, keys, v1);
    const deployConverge = await converge(cluster, v1, options, deployAt);
    progress(`deploy: ${deployConverge === null ? "not converged" : `${deployConverge.toFixed(1)} s`}`);

    await sleep(options.settleS * 1000);
    progress(`steady state for ${options.steadyS} s`);
    const steadyBefore = await counters(redis.client);
    await sleep(options.steadyS * 1000);
    const steadyAfter = await counters(redis.client);
    const steady = windowFigures(steadyBefore, steadyAfter, options.hosts, cluster.ticks);

    progress("rolling update of every deployment");
    const v2 = specs(options, "v2");
    const rolloutBefore = await counters(redis.client);
    await applyDeployments(redis.client, keys, v2);
    const rolloutConverge = await converge(cluster, v2, options, rolloutBefore.at);
    const rolloutAfter = await counters(redis.client);
    const rollout = { ...windowFigures(rolloutBefore, rolloutAfter, options.hosts, cluster.ticks), convergeS: rolloutConverge };
    progress(`rollout: ${rolloutConverge === null ? "not converged" : `${rolloutConverge.toFixed(1)} s`}`);

    await sleep(options.settleS * 1000);
    const leaderId = await redis.client.get(keys.leaderLease);
    let failoverS: number | null = null;
    let failoverFirstTickMs: number | null = null;
    if (leaderId && cluster.controllers.has(leaderId)) {
      progress(`failover: the leader ${leaderId} dies`);
      const crashAt = performance.now();
      await cluster.controllers.get(leaderId)?.abandon();
      cluster.controllers.delete(leaderId);
      const first = await cluster.leaderTickAfter(crashAt, 60_000, leaderId);
      if (first) {
        failoverS = (first.at - crashAt) / 1000;
        failoverFirstTickMs = first.ms;
      }
    }
    const okTicks = cluster.ticks.filter((t) => t.ok);
    const leaderChanges = okTicks.filter((t, i) => i > 0 && t.controller !== okTicks[i - 1]?.controller).length;
    const measured = cluster.ticks.filter((t) => (t.at >= steadyBefore.at && t.at <= steadyAfter.at) || (t.at >= rolloutBefore.at && t.at <= rolloutAfter.at));
    return {
      hosts: options.hosts,
      deployments: options.deployments,
      replicas: options.replicas,
      cpusPerHost: cluster.cpusPerHost,
      startedAt,
      deploy: { convergeS: deployConverge },
      steady,
      rollout,
      tick: tickFigures(measured),
      failoverS,
      failoverFirstTickMs,
      leaderChanges,
      options,
    };
  } finally {
    progress("stopping");
    await cluster.stop();
  }
}

async function main(): Promise<void> {
  const options = parseFleetOptions(process.argv.slice(2));
  const redis = await openBenchRedis();
  let result: FleetResult;
  try {
    result = await run(options, redis);
  } finally {
    await redis.stop();
  }
  process.stdout.write(printTable(result));
  mkdirSync(path.dirname(options.out), { recursive: true });
  writeFileSync(options.out, `${JSON.stringify(result, null, 2)}\n`);
  progress(`results in ${options.out}`);
}

// The private redis-server goes with this process, however it ends.
process.on("exit", () => killAllNow());
for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => process.exit(130));

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`fleet benchmark failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
