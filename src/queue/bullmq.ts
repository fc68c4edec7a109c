/**
 * BullMQ's Worker, Queue and Job classes, loaded on their own. The package
 * index loads every class it has (flows, schedulers, cron parsing, relays),
 * which doubles the start-up of a replica or router process. The paths are
 * BullMQ's compiled CommonJS build; if a release moves them, the index is the
 * fallback. Only files in src/queue/ import this module (or bullmq itself).
 */
import { createRequire } from "node:module";
import type { Job as JobClass, Queue as QueueClass, Worker as WorkerClass } from "bullmq";

export type { JobsOptions, WorkerOptions } from "bullmq";

const require = createRequire(import.meta.url);

function load<T>(file: string, name: string): T {
  try {
    return (require(`bullmq/dist/cjs/classes/${file}`) as Record<string, T>)[name] as T;
  } catch {
    return (require("bullmq") as Record<string, T>)[name] as T;
  }
}

export const Worker = load<typeof WorkerClass>("worker.js", "Worker");
export type Worker = WorkerClass;
export const Queue = load<typeof QueueClass>("queue.js", "Queue");
export type Queue = QueueClass;
export const Job = load<typeof JobClass>("job.js", "Job");
export type Job = JobClass;

/**
 * BullMQ's decoder of a raw moveToActive answer into the worker's job data
 * (internal: undefined if a release moves it, and the lean take is not used).
 */
export const raw2NextJobData = load<((raw: unknown) => unknown[]) | undefined>("redis-queue-backend.js", "raw2NextJobData");
