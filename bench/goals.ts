/**
 * The request path's goals, as ratios against the baselines of the same run:
 * Flotilla ÷ Moleculer req/s at every connection count (at least 1.0 at 64,
 * with no errors), and at 1 connection a p50 at most 1.5× Moleculer's and 0.6×
 * naive BullMQ's, and at most 80 µs of Redis CPU per request.
 */
import type { Cell, TargetRun } from "./report.js";

export interface GoalCheck {
  goal: string;
  /** The measured figure, null when a cell it needs was not run. */
  value: number | null;
  target: string;
  met: boolean | null;
}

export interface Goals {
  /** Flotilla req/s ÷ Moleculer req/s, by connection count. */
  throughputVsMoleculer: Record<string, number>;
  /** Flotilla p50 ÷ the baseline's p50, by connection count. */
  p50VsMoleculer: Record<string, number>;
  p50VsBullmqNaive: Record<string, number>;
  checks: GoalCheck[];
}

const round2 = (n: number): number => Math.round(n * 100) / 100;

export function computeGoals(targets: readonly TargetRun[], connections: readonly number[]): Goals | undefined {
  const cells = (name: string): Cell[] => targets.find((t) => t.target === name)?.cells ?? [];
  const flotilla = cells("flotilla");
  if (flotilla.length === 0) return undefined;
  const at = (list: Cell[], n: number): Cell | undefined => list.find((c) => c.connections === n);
  const ratios = (baseline: Cell[], pick: (c: Cell) => number): Record<string, number> => {
    const out: Record<string, number> = {};
    for (const n of connections) {
      const f = at(flotilla, n);
      const b = at(baseline, n);
      if (f && b && pick(b) > 0) out[String(n)] = round2(pick(f) / pick(b));
    }
    return out;
  };
  const moleculer = cells("moleculer");
  const goals: Goals = {
    throughputVsMoleculer: ratios(moleculer, (c) => c.load.rps),
    p50VsMoleculer: ratios(moleculer, (c) => c.load.p50Ms),
    p50VsBullmqNaive: ratios(cells("bullmq-naive"), (c) => c.load.p50Ms),
    checks: [],
  };
  const check = (goal: string, value: number | undefined, target: string, ok: (v: number) => boolean): void => {
    goals.checks.push(value === undefined ? { goal, value: null, target, met: null } : { goal, value, target, met: ok(value) });
  };
  const errors64 = at(flotilla, 64)?.load.errors;
  const vs64 = goals.throughputVsMoleculer["64"];
  check("64 connections: Flotilla req/s ÷ Moleculer req/s", vs64, "≥ 1.0, no errors", (v) => v >= 1 && errors64 === 0);
  check("1 connection: Flotilla p50 ÷ Moleculer p50", goals.p50VsMoleculer["1"], "≤ 1.5", (v) => v <= 1.5);
  check("1 connection: Flotilla p50 ÷ naive BullMQ p50", goals.p50VsBullmqNaive["1"], "≤ 0.6", (v) => v <= 0.6);
  check("1 connection: Redis CPU µs per Flotilla request", at(flotilla, 1)?.redis?.perRequest?.cpuUs, "≤ 80", (v) => v <= 80);
  return goals;
}

export function renderGoals(goals: Goals | undefined): string[] {
  if (!goals) return [];
  const series = (r: Record<string, number>): string =>
    Object.entries(r)
      .map(([n, v]) => `${n}: ${v.toFixed(2)}×`)
      .join(", ") || "-";
  return [
    "\nrequest-path goals (ratios within this run)",
    `  Flotilla ÷ Moleculer req/s by connections: ${series(goals.throughputVsMoleculer)}`,
    `  Flotilla ÷ Moleculer p50: ${series(goals.p50VsMoleculer)}; Flotilla ÷ naive BullMQ p50: ${series(goals.p50VsBullmqNaive)}`,
    ...goals.checks.map((c) => `  ${c.met === null ? "not measured" : c.met ? "met   " : "MISSED"}  ${c.goal}: ${c.value ?? "-"} (goal ${c.target})`),
  ];
}
