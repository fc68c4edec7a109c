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
}

export async function runLoad(url: string, connections: number, durationS: number): Promise<LoadResult> {
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
  let result: autocannon.Result;
  try {
    result = await withDeadline(`autocannon at ${connections} connections`, run, (durationS + 20) * 1000);
  } catch (err) {
    deadlineStop();
    throw err;
  }
  latencies.sort((a, b) => a - b);
  return {
    connections,
    durationS,
    rps: result.requests.average,
    completed,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    errors: result.errors + result.non2xx,
    non2xx: result.non2xx,
    timeouts: result.timeouts,
    autocannon: { p50Ms: result.latency.p50, p99Ms: result.latency.p99, averageMs: result.latency.average },
  };
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return Math.round((sorted[Math.max(0, index)] ?? Number.NaN) * 1000) / 1000;
}
