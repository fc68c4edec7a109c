/**
 * A leaner `queue.add`/`addBulk` for the request path: jobs that all share
 * one name and one set of options.
 */
import type { Logger } from "../shared/logger.js";
import { Job, type JobsOptions, type Queue } from "./bullmq.js";
import { missingMembers, warnFallbackOnce } from "./internals-check.js";

/** What BullMQ's queue backend stores for a new job (the fields of `Job.asJSON` its add scripts read). */
interface NewJobData {
  name: string;
  data: string;
  opts: JobsOptions;
  timestamp: number;
}
type NoParent = { parentKey?: undefined; parentDependenciesKey: string };
interface AddBackend {
  addJob(job: NewJobData, jobId: undefined, parentKeyOpts: NoParent): Promise<string>;
  addJobs(entries: Array<{ job: NewJobData; jobId: undefined; parentKeyOpts: NoParent }>): Promise<string[]>;
}

/** The queue internals the lean add calls. */
const ADD_INTERNALS = { "backend.addJob": "function", "backend.addJobs": "function" } as const;

/** Adds jobs of one name and fixed options to a queue; resolves with their ids. */
export type JobAdder = (data: unknown[]) => Promise<string[]>;

/**
 * Jobs of one name and one set of options (no parent, delay, priority or
 * custom id): BullMQ's backend gets the stored form of each job directly,
 * without a Job object per job (which also serialises an empty result, error
 * and stack trace each time). The options are normalised and validated once,
 * by a Job built the usual way, so the stored job is the one `queue.add`
 * stores. If a BullMQ release moves the backend's methods, it is `queue.add`
 * again (said once, loudly).
 */
export function jobAdder(queue: Queue, name: string, options: JobsOptions, log?: Logger): JobAdder {
  const merged: JobsOptions = { ...queue.defaultJobOptions, ...options };
  const template = new Job(queue, name, {}, merged) as unknown as { opts: JobsOptions; asJSON(): unknown; validateOptions?(json: unknown): void };
  template.validateOptions?.(template.asJSON());
  const special = Boolean(merged.parent || merged.delay || merged.priority || merged.jobId || merged.deduplication);
  const missing = missingMembers(queue, ADD_INTERNALS);
  if (missing.length > 0) warnFallbackOnce("the lean job add", missing, log);
  if (missing.length > 0 || special) {
    return async (data) => {
      if (data.length === 1) return [(await queue.add(name, data[0], merged)).id as string];
      return (await queue.addBulk(data.map((d) => ({ name, data: d, opts: merged })))).map((j) => j.id as string);
    };
  }
  const backend = (queue as unknown as { backend: AddBackend }).backend;
  const { addJob, addJobs } = backend;
  const opts = template.opts;
  const stored = (d: unknown): NewJobData => ({ name, data: JSON.stringify(d === undefined ? {} : d), opts, timestamp: Date.now() });
  const noParent: NoParent = { parentDependenciesKey: "" };
  return async (data) => {
    if (data.length === 1) return [String(await addJob.call(backend, stored(data[0]), undefined, noParent))];
    const ids = await addJobs.call(backend, data.map((d) => ({ job: stored(d), jobId: undefined, parentKeyOpts: noParent })));
    return ids.map(String);
  };
}
