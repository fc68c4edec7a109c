/**
 * Flotilla's serving path against three baselines: a raw node:http server (the
 * upper bound), a naive BullMQ front (queue.add + waitUntilFinished) and an RPC
 * framework over the same Redis (a Moleculer front and service). Each
 * target runs as its own processes, all at once, and they are loaded with
 * autocannon in turns, slice by slice, at several connection counts;
 * Redis-backed targets also get their Redis cost per request. Prints a
 * table per connection count and writes bench-results/latest.json.
 *
 *   npm run bench                          # 10 s cells
 *   BENCH_DURATION_S=3 npm run bench       # a quick run
 *   BENCH_TARGETS=batching npm run bench   # only the batching cell
 *   BENCH_TARGETS=streaming npm run bench  # only the streaming cell
 *
 * Settings: see bench/config.ts. BENCH_VERBOSE=1 echoes the children's logs.
 */
import { startMoleculer, startNaiveBullmq, startRawHttp } from "./baseline-targets.js";
import { measureBatching } from "./batching.js";
import { measureStreaming } from "./streaming.js";
import { readConfig, type BenchConfig } from "./config.js";
import { measureStartup } from "./flotilla-startup.js";
import { computeGoals } from "./goals.js";
import { benchPlanners } from "./planners.js";
import { startFlotilla, type FlotillaTarget } from "./flotilla-target.js";
import { mergeLoads, runLoad, runLoadSlice, type LoadSlice } from "./load.js";
import { killAllNow, stopAll } from "./proc.js";
import { deleteKeys, openBenchRedis, type BenchRedis } from "./redis-server.js";
import { addDeltas, costBetween, costOf, deltaBetween, resetStats, snapshot, type RedisDelta } from "./redis-stats.js";
import { addCpuDeltas, cpuCostOf, cpuDelta, cpuSnapshot, type CpuDelta } from "./process-cpu.js";
import { machineInfo, renderTables, writeJson, type BenchReport, type Cell, type TargetRun } from "./report.js";
import type { Target } from "./target.js";
import { fetchBody, sleep, withDeadline } from "./wait.js";

const log = (message: string): void => void process.stderr.write(`bench: ${message}\n`);
const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

const starters: Record<string, (redisUrl: string) => Promise<Target>> = {
  "raw-http": () => startRawHttp(),
  "bullmq-naive": (url) => startNaiveBullmq(url),
  moleculer: (url) => startMoleculer(url),
  flotilla: (url) => startFlotilla(url),
};

/** Key patterns of targets not yet cleaned up, for an interrupted run on a shared Redis. */
const dirtyPatterns = new Set<string>();
let benchRedis: BenchRedis | undefined;

async function cleanupKeys(patterns: readonly string[]): Promise<void> {
  if (!benchRedis || patterns.length === 0) return;
  const { deleted, sample } = await withDeadline("deleting the target's Redis keys", deleteKeys(benchRedis.client, patterns), 10_000);
  for (const p of patterns) dirtyPatterns.delete(p);
  if (deleted > 0) log(`deleted ${deleted} Redis keys left after the target stopped (e.g. ${sample.join(", ")})`);
}

/** A started load target, and its slices by connection count. */
interface Running {
  name: string;
  target: Target;
  run: TargetRun;
  slices: Map<number, Slice[]>;
  /** performance.now() when its last slice ended. */
  lastLoadAt: number;
}

interface Slice {
  load: LoadSlice;
  redis?: RedisDelta;
  cpu: CpuDelta;
}

/** Starts a load target: its first answer, its idle Redis traffic. Undefined (the error in the report) when it fails. */
async function startTarget(name: string, config: BenchConfig, report: BenchReport): Promise<Running | undefined> {
  const run: TargetRun = { target: name, cells: [] };
  report.targets.push(run);
  let target: Target | undefined;
  const redis = benchRedis as BenchRedis;
  try {
    log(`starting ${name}`);
    const t0 = performance.now();
    const starting = starters[name]?.(redis.url);
    if (!starting) throw new Error(`no target named ${name}`);
    target = await starting;
    for (const p of target.keyPatterns) dirtyPatterns.add(p);
    run.url = target.url;
    run.startMs = Math.round(performance.now() - t0);
    run.body = await fetchBody(target.url);
    log(`${name} answering at ${target.url} after ${run.startMs} ms: ${run.body}`);
    if (target.usesRedis) {
      const before = await snapshot(redis.client);
      await sleep(config.idleS * 1000);
      run.idleRedis = costBetween(before, await snapshot(redis.client), 0);
    }
    return { name, target, run, slices: new Map(), lastLoadAt: performance.now() };
  } catch (err) {
    run.error = message(err);
    log(`${name} failed: ${run.error}`);
    if (target) await stopTarget(name, target);
    return undefined;
  }
}

async function measureSlice(t: Running, connections: number, config: BenchConfig, round: number): Promise<void> {
  const client = benchRedis?.client;
  const tracked = t.target.usesRedis && client;
  if (tracked && benchRedis?.private) await resetStats(client);
  const pids = (await t.target.processes?.()) ?? {};
  const before = tracked ? await snapshot(client) : undefined;
  const cpuBefore = cpuSnapshot(pids);
  const load = await runLoadSlice(t.target.url, connections, config.sliceS);
  t.lastLoadAt = performance.now();
  const slice: Slice = { load, cpu: cpuDelta(cpuBefore, cpuSnapshot(pids)) };
  if (tracked && before) slice.redis = deltaBetween(before, await snapshot(client));
  const list = t.slices.get(connections) ?? [];
  list.push(slice);
  t.slices.set(connections, list);
  const { result } = load;
  const of = config.rounds > 1 ? ` (slice ${round + 1} of ${config.rounds})` : "";
  log(`${t.name} @ ${connections}${of}: ${result.rps.toFixed(0)} req/s, p50 ${result.p50Ms} ms, p99 ${result.p99Ms} ms, errors ${result.errors}`);
  await sleep(500); // let stragglers finish before the next slice's counters start
}

/** A target's slices at one connection count as one cell. */
function cellOf(slices: readonly Slice[], connections: number): Cell {
  const load = slices.length === 1 ? (slices[0] as Slice).load.result : mergeLoads(slices.map((s) => s.load));
  const cell: Cell = { connections, load, processes: cpuCostOf(addCpuDeltas(slices.map((s) => s.cpu)), load.completed) };
  const redis = slices.flatMap((s) => (s.redis ? [s.redis] : []));
  if (redis.length > 0 && redis.length === slices.length) cell.redis = costOf(addDeltas(redis), load.completed);
  return cell;
}

/**
 * The load targets, all started first, then loaded in turns: at each
 * connection count, a warm-up of each, then `rounds` rounds in which
 * every target runs one slice, in serpentine order (forward, then
 * backward), so that a slow spell of the machine falls on every target
 * alike. Then Flotilla's start-up figures, then everything stops.
 */
async function benchLoadTargets(names: readonly string[], config: BenchConfig, report: BenchReport): Promise<void> {
  const running: Running[] = [];
  try {
    for (const name of names) {
      const started = await startTarget(name, config, report);
      if (started) running.push(started);
    }
    for (const connections of config.connections) {
      // Code a connection count runs that the others do not (a lone request's path, batches) gets warm first.
      for (const t of running) {
        if (t.run.error) continue;
        await runLoad(t.target.url, connections, config.warmupS).catch((err: unknown) => log(`${t.name} warm-up @ ${connections}: ${message(err)}`));
      }
      await sleep(500);
      for (let round = 0; round < config.rounds; round++) {
        const order = round % 2 === 0 ? running : [...running].reverse();
        for (const t of order) {
          if (t.run.error) continue;
          try {
            await measureSlice(t, connections, config, round);
          } catch (err) {
            t.run.error = message(err);
            log(`${t.name} failed: ${t.run.error}`);
          }
        }
      }
    }
    for (const t of running) {
      // A target that failed part-way keeps only the connection counts it finished.
      t.run.cells = config.connections.flatMap((c) => {
        const slices = t.slices.get(c) ?? [];
        return slices.length === config.rounds ? [cellOf(slices, c)] : [];
      });
    }
    const flotilla = running.find((t) => t.name === "flotilla" && !t.run.error);
    if (flotilla && !config.loadOnly) {
      try {
        report.flotilla = await measureStartup(flotilla.target as FlotillaTarget, flotilla.lastLoadAt);
      } catch (err) {
        report.flotillaError = message(err);
      }
    }
  } finally {
    for (const t of [...running].reverse()) await stopTarget(t.name, t.target);
  }
}

async function stopTarget(name: string, target: Target): Promise<void> {
  log(`stopping ${name}`);
  await target.stop().catch((err: unknown) => log(`stopping ${name}: ${message(err)}`));
  await cleanupKeys(target.keyPatterns).catch((err: unknown) => log(`cleaning ${name}'s keys: ${message(err)}`));
}

/** The batching cell, in a Flotilla cluster of its own. */
async function benchBatching(config: BenchConfig, report: BenchReport): Promise<void> {
  let target: FlotillaTarget | undefined;
  try {
    log("starting flotilla for the batching cell");
    target = await startFlotilla((benchRedis as BenchRedis).url);
    for (const p of target.keyPatterns) dirtyPatterns.add(p);
    report.batching = await measureBatching(target, config, log);
  } catch (err) {
    report.batchingError = message(err);
    log(`batching failed: ${report.batchingError}`);
  } finally {
    if (target) await stopTarget("flotilla (batching)", target);
  }
}

/** The streaming cell, in a Flotilla cluster of its own. */
async function benchStreaming(config: BenchConfig, report: BenchReport): Promise<void> {
  let target: FlotillaTarget | undefined;
  try {
    log("starting flotilla for the streaming cell");
    target = await startFlotilla((benchRedis as BenchRedis).url);
    for (const p of target.keyPatterns) dirtyPatterns.add(p);
    report.streaming = await measureStreaming(target, config, log);
  } catch (err) {
    report.streamingError = message(err);
    log(`streaming failed: ${report.streamingError}`);
  } finally {
    if (target) await stopTarget("flotilla (streaming)", target);
  }
}

async function main(): Promise<number> {
  const config = readConfig();
  const watchdog = setTimeout(() => void abort(`the run exceeded BENCH_MAX_S (${config.maxS} s)`, 1), config.maxS * 1000);
  watchdog.unref();
  benchRedis = await openBenchRedis();
  log(`Redis ${benchRedis.version} at ${benchRedis.url}${benchRedis.private ? " (private)" : " (shared: its counters include other clients)"}`);
  const report: BenchReport = {
    date: new Date().toISOString(),
    machine: machineInfo(),
    config: { durationS: config.durationS, rounds: config.rounds, sliceS: config.sliceS, warmupS: config.warmupS, connections: config.connections, redis: { private: benchRedis.private, version: benchRedis.version } },
    method: [
      "req/s: autocannon requests.average (mean of per-second counts); p50/p99: from autocannon's per-response float ms timings, 2xx only",
      "errors: autocannon errors (incl. timeouts) + non-2xx responses",
      "load generator (autocannon) runs in the bench process on the same machine as the target and Redis",
      "cells: the load targets (raw-http, bullmq-naive, moleculer, flotilla) all run at once, idle but for the one being loaded; at each connection count every target runs `rounds` slices of `sliceS` seconds, taking turns (forward, then backward), and a cell pools its slices: p50/p99 over all their responses, req/s their duration-weighted mean, Redis and process costs summed over them (load.slices has each slice's own figures)",
      "idle Redis traffic of a target: sampled right after it started, with the targets started before it idle beside it",
      "Redis cmds/req: sum of commandstats calls over all commands (commands run inside Lua scripts are counted too) / completed requests",
      "Redis usec/req (JSON only): sum of commandstats usec; double-counts script work (EVALSHA usec includes its inner commands)",
      "Redis CPU µs/req: delta of used_cpu_user+used_cpu_sys of redis-server / completed requests; includes the target's background traffic (see idleRedis)",
      "Redis socket reads / writes per request: deltas of total_reads_processed / total_writes_processed (INFO stats) / completed requests; each write is a TCP send, about as costly to Redis as a short script",
      "processes: per completed request, each of the target's processes' CPU µs (delta of utime+stime in /proc/<pid>/stat, 10 ms ticks) and write system calls (delta of syscw in /proc/<pid>/io) over the cell",
      "goals: Flotilla ÷ Moleculer req/s and p50, Flotilla ÷ naive BullMQ p50, per connection count, and Flotilla's Redis CPU µs/req at 1 connection, against the request path's targets",
    ],
    targets: [],
  };
  const [load1 = 0] = report.machine.loadAvgAtStart;
  if (load1 > report.machine.cpus / 2) log(`warning: load average ${load1} on ${report.machine.cpus} CPUs before starting; other work on this machine will skew the results`);
  try {
    await benchLoadTargets(config.targets.filter((name) => name in starters), config, report);
    for (const name of config.targets) {
      if (name === "batching") await benchBatching(config, report);
      else if (name === "streaming") await benchStreaming(config, report);
    }
  } finally {
    await benchRedis.stop().catch(() => undefined);
    benchRedis = undefined;
    clearTimeout(watchdog);
  }
  report.goals = computeGoals(report.targets, config.connections);
  if (!config.loadOnly) report.planners = benchPlanners();
  process.stdout.write(`${renderTables(report)}\n`);
  if (report.planners) process.stdout.write("\ncontrol plane: one controller tick (pure reconcile) for 1,000 deployments × 10 replicas on 100 hosts, after 5 warm-up ticks\n");
  for (const t of report.planners ?? []) process.stdout.write(`  ${t.scenario}: median ${t.medianMs} ms, max ${t.maxMs} ms; first tick ${t.firstMs} ms (${t.decisions} decisions)\n`);
  log(`wrote ${writeJson(report)}`);
  return report.targets.some((t) => t.error) || report.flotillaError || report.batchingError || report.streamingError ? 1 : 0;
}

let aborting = false;
async function abort(reason: string, code: number): Promise<void> {
  if (aborting) {
    killAllNow();
    process.exit(code);
  }
  aborting = true;
  log(`${reason}: stopping everything`);
  await stopAll(3000).catch(() => undefined);
  if (benchRedis && !benchRedis.private) await cleanupKeys([...dirtyPatterns]).catch(() => undefined);
  await benchRedis?.stop().catch(() => undefined);
  process.exit(code);
}

process.on("SIGINT", () => void abort("interrupted", 130));
process.on("SIGTERM", () => void abort("terminated", 143));
process.on("exit", () => killAllNow());

main().then(
  (code) => process.exit(code),
  (err: unknown) => void abort(`failed: ${message(err)}`, 1),
);
