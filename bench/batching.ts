/**
 * The batching cell: in one Flotilla cluster, the same model (app/model.ts:
 * one call at a time, 5 ms per call plus 0.1 ms per input) deployed twice,
 * called once per request and through batch() with maxBatchSize 16. Each is
 * loaded at 64 connections; the throughput ratio is what batching buys.
 */
import type { BenchConfig } from "./config.js";
import type { FlotillaTarget } from "./flotilla-target.js";
import { runLoad, type LoadResult } from "./load.js";
import { sleep } from "./wait.js";

export const BATCHING_CONNECTIONS = 64;

export interface BatchingResult {
  connections: number;
  model: string;
  maxBatchSize: number;
  unbatched: LoadResult;
  batched: LoadResult;
  /** Batched req/s ÷ unbatched req/s. */
  ratio: number;
}

export async function measureBatching(target: FlotillaTarget, config: BenchConfig, log: (message: string) => void): Promise<BatchingResult> {
  const origin = new URL(target.url).origin;
  const measure = async (name: string, ref: string): Promise<LoadResult> => {
    await target.deploy(name, ref);
    const url = `${origin}/${name}`;
    await runLoad(url, BATCHING_CONNECTIONS, config.warmupS);
    await sleep(500);
    const load = await runLoad(url, BATCHING_CONNECTIONS, config.durationS);
    log(`batching ${name} @ ${BATCHING_CONNECTIONS}: ${load.rps.toFixed(0)} req/s, p50 ${load.p50Ms} ms, p99 ${load.p99Ms} ms, errors ${load.errors}`);
    return load;
  };
  const unbatched = await measure("model-unbatched", "model.ts#unbatched");
  const batched = await measure("model-batched", "model.ts#batched");
  return {
    connections: BATCHING_CONNECTIONS,
    model: "one call at a time, 5 ms per call + 0.1 ms per input (a timer, no CPU)",
    maxBatchSize: 16,
    unbatched,
    batched,
    ratio: Math.round((batched.rps / Math.max(unbatched.rps, 1e-9)) * 100) / 100,
  };
}

export function renderBatching(result: BatchingResult | undefined, error: string | undefined): string[] {
  if (!result) return error ? [`\nbatching: not measured (${error})`] : [];
  const line = (label: string, l: LoadResult): string => `  ${label}: ${l.rps.toFixed(0)} req/s, p50 ${l.p50Ms} ms, p99 ${l.p99Ms} ms, errors ${l.errors}`;
  return [
    `\nbatching at ${result.connections} connections, a model that runs ${result.model}`,
    line("unbatched", result.unbatched),
    line(`batch() max ${result.maxBatchSize}`, result.batched),
    `  batched ÷ unbatched throughput: ${result.ratio.toFixed(2)}×`,
  ];
}
