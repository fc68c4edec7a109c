/** The fleet simulation's results: the JSON written to disk and the table printed. */
import Table from "cli-table3";
import type { FleetOptions } from "./fleet-options.js";

export interface WindowFigures {
  seconds: number;
  redisCmdsPerS: number;
  redisNetOutBytesPerS: number;
  perHostCmdsPerS: number;
  perHostNetOutBytesPerS: number;
  /** redis-server's CPU (user + system), % of one core. */
  redisCpuPct: number;
  /** Calls per second of the busiest Redis commands (those run by scripts included), busiest first. */
  topCommands: Record<string, number>;
  tick: TickFigures;
}

export interface TickFigures {
  count: number;
  medianMs: number;
  p99Ms: number;
  maxMs: number;
}

export interface FleetResult {
  hosts: number;
  deployments: number;
  replicas: number;
  cpusPerHost: number;
  startedAt: string;
  deploy: { convergeS: number | null };
  steady: WindowFigures;
  rollout: WindowFigures & { convergeS: number | null };
  /** Leader ticks over the steady and rollout windows together. */
  tick: TickFigures;
  /** From the leader's crash to the new leader's first successful tick; null if none came. */
  failoverS: number | null;
  /** The new leader's first tick (a full read of the cluster). */
  failoverFirstTickMs: number | null;
  /** Times the leader's ticks came from another controller than the tick before (the failover included). */
  leaderChanges: number;
  options: FleetOptions;
}

const fmt = (n: number | null, digits = 1): string => (n === null || !Number.isFinite(n) ? "—" : n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits }));

export function printTable(r: FleetResult): string {
  const style = { head: [], border: [] };
  const table = new Table({ head: ["", "steady state", "rolling update"], style });
  const row = (label: string, f: (w: WindowFigures) => string): void => {
    table.push([label, f(r.steady), f(r.rollout)]);
  };
  row("window (s)", (w) => fmt(w.seconds));
  row("Redis commands/s", (w) => fmt(w.redisCmdsPerS, 0));
  row("Redis bytes out/s", (w) => fmt(w.redisNetOutBytesPerS, 0));
  row("per host: commands/s", (w) => fmt(w.perHostCmdsPerS, 2));
  row("per host: bytes out/s", (w) => fmt(w.perHostNetOutBytesPerS, 0));
  row("Redis CPU (% of a core)", (w) => fmt(w.redisCpuPct, 0));
  row("leader tick median (ms)", (w) => fmt(w.tick.medianMs));
  row("leader tick p99 (ms)", (w) => fmt(w.tick.p99Ms));
  row("leader ticks", (w) => String(w.tick.count));
  const summary = new Table({ style });
  summary.push(
    { "deploy → all running (s)": fmt(r.deploy.convergeS) },
    { "rolling update → all running (s)": fmt(r.rollout.convergeS) },
    { "leader tick median / p99 (ms)": `${fmt(r.tick.medianMs)} / ${fmt(r.tick.p99Ms)}` },
    { "failover (s)": fmt(r.failoverS, 2) },
    { "new leader's first tick (ms)": fmt(r.failoverFirstTickMs, 0) },
    { "leader changes (failover included)": String(r.leaderChanges) },
  );
  return `fleet: ${r.hosts} hosts × ${r.deployments} deployments × ${r.replicas} replicas (${r.cpusPerHost} CPUs per host)\n${table.toString()}\n${summary.toString()}\n`;
}
