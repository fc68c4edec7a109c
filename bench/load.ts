/**
 * One load cell: autocannon against a URL for a fixed time. Latency
 * percentiles are computed here from autocannon's per-response timings (float
 * ms), because its own histogram has a 1 ms resolution; its percentiles are
 * kept too. Only 2xx responses count toward latency, as autocannon does.
 */
import autocannon from "autocannon";
import { withDeadline } from "./wait.js";

export interface LoadResult {
  connections: number;
  durationS: number;
  /** Mean of the per-second request counts (autocannon's requests.average). */
  rps: number;
  /** Responses received, any status. */
  completed: number;
  p50Ms: number;
  p99Ms: number;
  /** Connection errors (timeouts included) plus non-2xx responses. */
  errors: number;
  non2xx: number;
  timeouts: number;
  autocannon: { p50Ms: number; p99Ms: number; averageMs: number };
  /** A cell measured in slices (see mergeLoads): each slice's own figures, in the order they ran. */
  slices?: Array<{ rps: number; p50Ms: number; p99Ms: number; completed: number }>;
}

/** A load run and its 2xx latencies (ms, sorted), kept out of the report. */
export interface LoadSlice {
  result: LoadResult;
  latencies: number[];
}

export async function runLoad(url: string, connections: number, durationS: number): Promise<LoadResult> {
  return (await runLoadSlice(url, connections, durationS)).result;
}

/**
 * Slices of one cell, run at different times, as one cell: their requests
 * pooled for the percentiles, their rates averaged over their durations,
 * their errors summed. autocannon's own figures become the slices' median
 * p50, highest p99 and request-weighted mean.
 */
export function mergeLoads(slices: readonly LoadSlice[]): LoadResult {
  const first = slices[0];
  if (!first) throw new Error("mergeLoads: no slices");
  const latencies = slices.flatMap((s) => s.latencies).sort((a, b) => a - b);
  const sum = (pick: (r: LoadResult) => number): number => slices.reduce((n, s) => n + pick(s.result), 0);
  const durationS = sum((r) => r.durationS);
  const completed = sum((r) => r.completed);
  const p50s = slices.map((s) => s.result.autocannon.p50Ms).sort((a, b) => a - b);
  return {
    connections: first.result.connections,
    durationS,
    rps: sum((r) => r.rps * r.durationS) / durationS,
    completed,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    errors: sum((r) => r.errors),
    non2xx: sum((r) => r.non2xx),
    timeouts: sum((r) => r.timeouts),
    autocannon: {
      p50Ms: p50s[(p50s.length - 1) >> 1] ?? Number.NaN,
      p99Ms: Math.max(...slices.map((s) => s.result.autocannon.p99Ms)),
      averageMs: completed > 0 ? sum((r) => r.autocannon.averageMs * r.completed) / completed : Number.NaN,
    },
    slices: slices.map(({ result: r }) => ({ rps: r.rps, p50Ms: r.p50Ms, p99Ms: r.p99Ms, completed: r.completed })),
  };
}

export async function runLoadSlice(url: string, connections: number, durationS: number): Promise<LoadSlice> {
  const latencies: number[] = [];
  let completed = 0;
  let deadlineStop: () => void = () => undefined;
  const run = new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon({ url, connections, duration: durationS, timeout: 10 }, (err: unknown, result: autocannon.Result) => {
      if (err) reject(err instanceof Error ? err : new Error(String(err)));
      else resolve(result);
    });
    instance.on("response", (_client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
      completed++;
      if (statusCode >= 200 && statusCode < 300) latencies.push(responseTime);
    });
    deadlineStop = () => instance.stop();
  });
  let out: autocannon.Result;
  try {
    out = await withDeadline(`autocannon at ${connections} connections`, run, (durationS + 20) * 1000);
  } catch (err) {
    deadlineStop();
    throw err;
  }
  latencies.sort((a, b) => a - b);
  const result: LoadResult = {
    connections,
    durationS,
    rps: out.requests.average,
    completed,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    errors: out.errors + out.non2xx,
    non2xx: out.non2xx,
    timeouts: out.timeouts,
    autocannon: { p50Ms: out.latency.p50, p99Ms: out.latency.p99, averageMs: out.latency.average },
  };
  return { result, latencies };
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return Math.round((sorted[Math.max(0, index)] ?? Number.NaN) * 1000) / 1000;
}
