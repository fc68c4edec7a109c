/** The benchmark's results: what is kept for each cell, the printed tables, and bench-results/latest.json. */
import { mkdirSync, writeFileSync } from "node:fs";
import type { PlannerTiming } from "./planners.js";
import os from "node:os";
import path from "node:path";
import Table from "cli-table3";
import { renderBatching, type BatchingResult } from "./batching.js";
import { renderGoals, type Goals } from "./goals.js";
import { renderStreaming, type StreamingResult } from "./streaming.js";
import type { FlotillaStartup } from "./flotilla-startup.js";
import type { LoadResult } from "./load.js";
import type { ProcessCost } from "./process-cpu.js";
import type { RedisCost } from "./redis-stats.js";

export interface Cell {
  connections: number;
  load: LoadResult;
  /** Redis-backed targets only. */
  redis?: RedisCost;
  /** CPU µs and write calls per request of each of the target's processes (see process-cpu.ts). */
  processes?: Record<string, ProcessCost>;
}

export interface TargetRun {
  target: string;
  url?: string;
  /** Spawn until answering 200 (includes the first rollout for Flotilla). */
  startMs?: number;
  /** One answer's body, to check that the targets answer alike. */
  body?: string;
  /** Redis traffic while the target sat idle, per second. */
  idleRedis?: RedisCost;
  cells: Cell[];
  error?: string;
}

export interface BenchReport {
  date: string;
  machine: { node: string; platform: string; release: string; cpus: number; cpuModel: string; totalMemMiB: number; loadAvgAtStart: number[] };
  config: { durationS: number; rounds: number; sliceS: number; warmupS: number; connections: number[]; redis: { private: boolean; version: string } };
  method: string[];
  targets: TargetRun[];
  /** Flotilla against Moleculer and naive BullMQ: see goals.ts. */
  goals?: Goals;
  flotilla?: FlotillaStartup;
  flotillaError?: string;
  planners?: PlannerTiming[];
  batching?: BatchingResult;
  batchingError?: string;
  streaming?: StreamingResult;
  streamingError?: string;
}

export function machineInfo(): BenchReport["machine"] {
  const cpus = os.cpus();
  return {
    node: process.version,
    platform: process.platform,
    release: os.release(),
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? "unknown",
    totalMemMiB: Math.round(os.totalmem() / 2 ** 20),
    loadAvgAtStart: os.loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

const fmt = (n: number | undefined, digits = 0): string => (n === undefined || Number.isNaN(n) ? "-" : n.toFixed(digits));
const ratio = (a: number, b: number | undefined): string => (b && b > 0 ? `${(a / b).toFixed(2)}×` : "-");

export function renderTables(report: BenchReport): string {
  const out: string[] = [];
  for (const connections of report.targets.length > 0 ? report.config.connections : []) {
    const cellOf = (name: string): Cell | undefined => report.targets.find((t) => t.target === name)?.cells.find((c) => c.connections === connections);
    const raw = cellOf("raw-http")?.load.rps;
    const naive = cellOf("bullmq-naive")?.load.rps;
    const moleculer = cellOf("moleculer")?.load.rps;
    const table = new Table({
      head: ["target", "req/s", "p50 ms", "p99 ms", "errors", "vs raw", "vs bullmq", "vs moleculer", "Redis cmds/req", "Redis CPU µs/req"],
      style: { head: [], border: [] },
    });
    for (const t of report.targets) {
      const cell = t.cells.find((c) => c.connections === connections);
      if (!cell) {
        table.push([t.target, { colSpan: 9, content: t.error ? `failed: ${t.error.slice(0, 90)}` : "not run" }]);
        continue;
      }
      const { load, redis } = cell;
      table.push([
        t.target,
        fmt(load.rps),
        fmt(load.p50Ms, 2),
        fmt(load.p99Ms, 2),
        String(load.errors),
        ratio(load.rps, raw),
        ratio(load.rps, naive),
        ratio(load.rps, moleculer),
        fmt(redis?.perRequest?.calls, 1),
        fmt(redis?.perRequest?.cpuUs, 1),
      ]);
    }
    const { rounds, sliceS } = report.config;
    const each = rounds > 1 ? `${rounds * sliceS} s each, in ${rounds} slices of ${sliceS} s taking turns` : `${sliceS} s each`;
    out.push(`\n${connections} connection${connections === 1 ? "" : "s"} (${each})`, table.toString());
  }
  for (const t of report.targets) {
    if (t.idleRedis) out.push(`${t.target} idle: ${fmt(t.idleRedis.calls / Math.max(t.idleRedis.elapsedS, 1e-3), 1)} Redis cmds/s, ${fmt(t.idleRedis.cpuUs / Math.max(t.idleRedis.elapsedS, 1e-3) / 1000, 2)} ms Redis CPU/s`);
  }
  for (const connections of report.config.connections) {
    const parts = report.targets.flatMap((t) => {
      const procs = t.cells.find((c) => c.connections === connections)?.processes;
      return procs ? [`${t.target} ${Object.entries(procs).map(([k, v]) => `${k} ${fmt(v.cpuUs)}${v.writes === undefined ? "" : ` (${fmt(v.writes, 1)} w)`}`).join(" + ")}`] : [];
    });
    if (parts.length > 0) out.push(`process CPU µs/req (write calls/req) @ ${connections}: ${parts.join("; ")}`);
  }
  for (const connections of report.config.connections) {
    const parts = report.targets.flatMap((t) => {
      const r = t.cells.find((c) => c.connections === connections)?.redis?.perRequest;
      return r?.reads === undefined ? [] : [`${t.target} ${fmt(r.reads, 2)} / ${fmt(r.writes, 2)}`];
    });
    if (parts.length > 0) out.push(`Redis socket reads / writes per request @ ${connections}: ${parts.join("; ")}`);
  }
  const bodies = new Set(report.targets.flatMap((t) => (t.body === undefined ? [] : [t.body])));
  if (bodies.size > 1) out.push(`\nthe targets answer different bodies: ${report.targets.map((t) => `${t.target} ${t.body ?? "-"}`).join("; ")}`);
  out.push(...renderGoals(report.goals));
  out.push(...renderStartup(report));
  out.push(...renderBatching(report.batching, report.batchingError));
  out.push(...renderStreaming(report.streaming, report.streamingError));
  return out.join("\n");
}

function renderStartup(report: BenchReport): string[] {
  const f = report.flotilla;
  if (!f) return report.flotillaError ? [`\nflotilla start-up: not measured (${report.flotillaError})`] : [];
  const replica = (r: FlotillaStartup["firstReplica"]): string =>
    r ? `spawn → running ${r.spawnToRunningMs} ms (of which handler load + worker ready ${fmt(r.loadAndWorkerReadyMs ?? undefined)} ms)` : "replica log lines not found";
  const rss = Object.entries(f.rssMiB)
    .map(([k, v]) => `${k} ${v === null ? "?" : `${v} MiB`}`)
    .join(", ");
  const pss = Object.entries(f.pssMiB ?? {})
    .map(([k, v]) => `${k} ${v === null ? "?" : `${v} MiB`}`)
    .join(", ");
  return [
    "\nflotilla start-up",
    `  first deployment:  apply → HEALTHY ${f.firstApplyToHealthyMs} ms; ${replica(f.firstReplica)}`,
    `  second deployment: apply → HEALTHY ${f.secondApplyToHealthyMs} ms; ${replica(f.secondReplica)}`,
    `  replica memory: peak under load ${f.loadedReplicaPeakMiB ?? "?"} MiB (VmHWM); the rest read ${f.settledAfterS} s after the load, unless they say otherwise`,
    `  RSS: ${rss}`,
    `  PSS (shared pages divided among processes): ${pss}`,
    ...renderRuntimeEnv(f),
  ];
}

function renderRuntimeEnv(f: FlotillaStartup): string[] {
  if (!f.runtimeEnv) return f.runtimeEnvError ? [`  runtimeEnv start-up: not measured (${f.runtimeEnvError})`] : [];
  const line = (label: string, s: NonNullable<FlotillaStartup["runtimeEnv"]>["cold"]): string =>
    `  ${label}: apply → HEALTHY ${s.applyToHealthyMs} ms (host prepares the package ${s.prepareMs === null ? "-" : `${s.prepareMs} ms`}; ` +
    `spawn → running ${s.replica ? `${s.replica.spawnToRunningMs} ms` : "?"}); pack + upload before it ${s.packAndUploadMs} ms (${s.packageBytes} B)`;
  return [line("runtimeEnv, cold host cache (download + unpack + npm ci of one dependency)", f.runtimeEnv.cold), line("runtimeEnv, warm host cache (same package)", f.runtimeEnv.warm)];
}

export function writeJson(report: BenchReport, file = path.resolve("bench-results", "latest.json")): string {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  return file;
}
