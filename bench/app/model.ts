import { batch } from "flotilla";

/**
 * A model that runs one call at a time, as a GPU does, and costs 5 ms per
 * call plus 0.1 ms per input. It waits without using the CPU, so the cores
 * stay with the serving path. Calls queue on a timeline of their own: one
 * ends exactly its cost after the previous one, however late timers fire.
 */
const PER_CALL_MS = 5;
const PER_INPUT_MS = 0.1;
let busyUntil = 0;

function runModel(inputs: number): Promise<void> {
  const now = performance.now();
  busyUntil = Math.max(now, busyUntil) + PER_CALL_MS + PER_INPUT_MS * inputs;
  return new Promise((resolve) => setTimeout(resolve, busyUntil - now));
}

/** One model call per request. */
export async function unbatched() {
  await runModel(1);
  return { ok: true };
}

/** Requests share model calls, up to 16 inputs each. */
export const batched = batch(
  async (requests: unknown[]) => {
    await runModel(requests.length);
    return requests.map(() => ({ ok: true }));
  },
  { maxBatchSize: 16 },
);
