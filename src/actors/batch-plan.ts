/**
 * The batching decision as a pure function: given what waits and what runs,
 * start a batch now, or wake up when the oldest waiting request has waited
 * long enough. The queue around it (batch-queue.ts) only keeps times and timers.
 */
import type { BatchOptions } from "./batch-options.js";

export interface BatchQueueView {
  /** Requests waiting for a batch. */
  waiting: number;
  /** When the oldest waiting request arrived (ms, monotonic); undefined when none waits. */
  oldestArrivedAt: number | undefined;
  /** Batches running now. */
  running: number;
}

export type BatchStep =
  /** Start a batch of the `size` oldest waiting requests now. */
  | { kind: "start"; size: number }
  /** Nothing to start before `at` (ms, same clock), unless more requests arrive or a batch ends. */
  | { kind: "wait"; at: number }
  /** Nothing to do until a request arrives or a batch ends. */
  | { kind: "idle" };

export function nextBatchStep(view: BatchQueueView, options: Readonly<BatchOptions>, now: number): BatchStep {
  if (view.waiting === 0 || view.oldestArrivedAt === undefined || view.running >= options.maxConcurrentBatches) return { kind: "idle" };
  if (view.waiting >= options.maxBatchSize) return { kind: "start", size: options.maxBatchSize };
  const due = view.oldestArrivedAt + options.batchWaitTimeoutS * 1000;
  if (now >= due) return { kind: "start", size: view.waiting };
  return { kind: "wait", at: due };
}
