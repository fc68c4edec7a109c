/**
 * BullMQ's Worker and Queue classes, loaded on their own. The package index
 * loads every class it has (flows, schedulers, cron parsing, relays), which
 * doubles the start-up of a replica or router process. The paths are BullMQ's
 * compiled CommonJS build; if a release moves them, the index is the fallback.
 */
import { createRequire } from "node:module";
import type { Queue as QueueClass, Worker as WorkerClass } from "bullmq";

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

type FetchNext = (token: string, opts?: { block?: boolean }) => Promise<unknown>;

/**
 * Makes a worker start a job at once when it has nothing else to do.
 *
 * After a fetch returns a job, BullMQ's main loop fetches again (one more
 * moveToActive round trip) and waits for that answer before it starts the job
 * it already has. Under load the second fetch usually finds work; at low load
 * it finds none and only delays the request. `isIdle` says whether the replica
 * runs no request: then the fetch right after a job returns nothing without
 * asking Redis, and the job starts. The worker also counts the queue as
 * drained, so its next fetch is a blocking wait, which a waiting job (or the
 * marker BullMQ leaves with every job it hands out) ends at once.
 * The fetch method is internal to BullMQ: if a release renames it, the worker
 * is left as it is.
 */
export function startJobsAtOnceWhenIdle(worker: WorkerClass, isIdle: () => boolean): void {
  const target = worker as unknown as { _getNextJob?: FetchNext; drained?: boolean };
  const fetchNext = target._getNextJob;
  if (typeof fetchNext !== "function" || typeof target.drained !== "boolean") return;
  let skipNextFetch = false;
  target._getNextJob = async (token, opts) => {
    if (skipNextFetch) {
      skipNextFetch = false;
      target.drained = true;
      return undefined;
    }
    const job = await fetchNext.call(worker, token, opts);
    if (job && isIdle()) skipNextFetch = true;
    return job;
  };
}
