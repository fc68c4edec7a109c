/**
 * The options of `batch()`, validated once with their defaults (Ray Serve's
 * `@serve.batch` defaults), and again on every `setBatchOptions` change.
 */
import { z } from "zod";

/** How a batched function gathers requests into one call of the batch function. */
export interface BatchOptions {
  /**
   * The most inputs one call of the batch function gets.
   * @default 10
   */
  maxBatchSize: number;
  /**
   * How long the first request of a batch waits for others to join it before
   * the batch runs anyway, in seconds. 0: batch only what arrives in the same
   * event-loop turn.
   * @default 0.01
   */
  batchWaitTimeoutS: number;
  /**
   * Batches that may run at once. With 1, requests arriving while a batch
   * runs form the next batch, which starts when it ends (a model that takes
   * one batch at a time, like a GPU).
   * @default 1
   */
  maxConcurrentBatches: number;
}

export type BatchOptionsInput = Partial<BatchOptions>;

export const DEFAULT_BATCH_OPTIONS: Readonly<BatchOptions> = Object.freeze({ maxBatchSize: 10, batchWaitTimeoutS: 0.01, maxConcurrentBatches: 1 });

const batchOptionsSchema = z.strictObject({
  maxBatchSize: z.number().int().min(1).max(1_000_000),
  // Node timers hold at most 2^31-1 ms.
  batchWaitTimeoutS: z.number().min(0).max(2_000_000),
  maxConcurrentBatches: z.number().int().min(1).max(1_000_000),
});

function describeValue(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === "number" || typeof value === "boolean" || value === null || value === undefined) return String(value);
  return Array.isArray(value) ? "an array" : typeof value === "object" ? "an object" : `a ${typeof value}`;
}

/**
 * `base` with `change` applied, checked. Throws a TypeError that names every
 * bad option and its value, e.g. `batch(): maxBatchSize: Too small: expected
 * number to be >=1 (got 0)`.
 */
export function parseBatchOptions(change: unknown, base: Readonly<BatchOptions> = DEFAULT_BATCH_OPTIONS): Readonly<BatchOptions> {
  if (change === undefined) return base;
  if (typeof change !== "object" || change === null || Array.isArray(change)) {
    throw new TypeError(`batch(): the options must be an object such as { maxBatchSize: 8 } (got ${describeValue(change)})`);
  }
  // An option given as undefined keeps its value, as if it were left out.
  const given = Object.fromEntries(Object.entries(change).filter(([, v]) => v !== undefined));
  const result = batchOptionsSchema.safeParse({ ...base, ...given }, { reportInput: true });
  if (!result.success) {
    const problems = result.error.issues.map((issue) => {
      if (issue.code === "unrecognized_keys") return `unknown option${issue.keys.length > 1 ? "s" : ""} ${issue.keys.map((k) => `'${k}'`).join(", ")} (known: ${Object.keys(DEFAULT_BATCH_OPTIONS).join(", ")})`;
      return `${issue.path.join(".")}: ${issue.message} (got ${describeValue("input" in issue ? issue.input : undefined)})`;
    });
    throw new TypeError(`batch(): ${problems.join("; ")}`);
  }
  return Object.freeze(result.data);
}
