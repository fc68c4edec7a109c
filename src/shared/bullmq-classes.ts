/**
 * BullMQ's Worker and Queue classes, loaded on their own. The package index
 * loads every class it has (flows, schedulers, cron parsing, relays), which
 * doubles the start-up of a replica or router process. The paths are BullMQ's
 * compiled CommonJS build; if a release moves them, the index is the fallback.
 */
import { createRequire } from "node:module";
import type { Job as JobClass, JobsOptions, Queue as QueueClass, Worker as WorkerClass } from "bullmq";

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
const Job = load<typeof JobClass>("job.js", "Job");

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

/** Adds jobs of one name and fixed options to a queue; resolves with their ids. */
export type JobAdder = (data: unknown[]) => Promise<string[]>;

/**
 * A leaner `queue.add`/`addBulk` for jobs that all share one name and one set
 * of options (no parent, delay, priority or custom id): it hands BullMQ's
 * backend the stored form of each job directly, without building a Job
 * object per job (which also serialises an empty result, error and stack
 * trace each time). The options are normalised and validated once, by a Job
 * built the usual way, so the stored job is the one `queue.add` stores. If a
 * BullMQ release moves the backend's methods, it is `queue.add` again.
 */
export function jobAdder(queue: QueueClass, name: string, options: JobsOptions): JobAdder {
  const merged: JobsOptions = { ...queue.defaultJobOptions, ...options };
  const backend = (queue as unknown as { backend?: Partial<AddBackend> }).backend;
  const { addJob, addJobs } = backend ?? {};
  const template = new Job(queue, name, {}, merged) as unknown as { opts: JobsOptions; asJSON(): unknown; validateOptions?(json: unknown): void };
  template.validateOptions?.(template.asJSON());
  const special = Boolean(merged.parent || merged.delay || merged.priority || merged.jobId || merged.deduplication);
  if (!backend || typeof addJob !== "function" || typeof addJobs !== "function" || special) {
    return async (data) => {
      if (data.length === 1) return [(await queue.add(name, data[0], merged)).id as string];
      return (await queue.addBulk(data.map((d) => ({ name, data: d, opts: merged })))).map((j) => j.id as string);
    };
  }
  const opts = template.opts;
  const stored = (d: unknown): NewJobData => ({ name, data: JSON.stringify(d === undefined ? {} : d), opts, timestamp: Date.now() });
  const noParent: NoParent = { parentDependenciesKey: "" };
  return async (data) => {
    if (data.length === 1) return [String(await addJob.call(backend, stored(data[0]), undefined, noParent))];
    const ids = await addJobs.call(backend, data.map((d) => ({ job: stored(d), jobId: undefined, parentKeyOpts: noParent })));
    return ids.map(String);
  };
}

/** Keys of a queue the idle tuning reads. */
export interface MarkerKeys {
  marker: string;
  wait: string;
  prioritized: string;
  delayed: string;
}

/**
 * Lua: removes the base marker (member "0") when nothing waits. A stale base
 * marker also makes BullMQ look at the delayed set again; so when one is
 * removed and delayed jobs exist, the marker for the next one is set in its
 * place (as BullMQ's own scripts do), and the wait learns when that job is due.
 * KEYS[1] = marker, KEYS[2] = wait list, KEYS[3] = prioritized set,
 * KEYS[4] = delayed set.
 */
const CLEAR_STALE_MARKER = `
if redis.call("LLEN", KEYS[2]) > 0 or redis.call("ZCARD", KEYS[3]) > 0 then
  return 0
end
if redis.call("ZREM", KEYS[1], "0") == 0 then
  return 0
end
local next = redis.call("ZRANGE", KEYS[4], 0, 0, "WITHSCORES")
if next[2] then
  redis.call("ZADD", KEYS[1], tonumber(next[2]) / 0x1000, "1")
end
return 1
`;

type FetchNext = (token: string, opts?: { block?: boolean }) => Promise<unknown>;
/** BullMQ's raw moveToActive answer: job data (undefined when none), id, rate-limit delay, next delayed timestamp. */
type NextJobData = [unknown, ...unknown[]];
type BackendMoveToActive = (token: string, name?: string) => Promise<NextJobData>;
type WaitForJob = (blockTimeout: number) => Promise<unknown>;

interface RedisClientish {
  eval(script: string, numKeys: number, ...args: string[]): Promise<unknown>;
  /** A single connection's socket (absent on a Cluster client). */
  stream?: { cork?(): void; uncork?(): void; writable?: boolean };
}

interface WorkerInternals {
  _getNextJob?: FetchNext;
  moveToActive?: (token: string, name?: string) => Promise<unknown>;
  drained?: boolean;
  opts: { name?: string };
  backend?: {
    waitForJob?: WaitForJob;
    moveToActive?: BackendMoveToActive;
    blockingClient?: Promise<RedisClientish>;
    /** The facade BullMQ's backend reads its connection from (`client` is a getter). */
    queue?: object;
  };
}

/**
 * Runs `send`, which issues commands on `client` in this turn, with the
 * client's socket corked, so they leave in one write (one system call, one
 * wake-up of Redis) instead of one each. Uncorked once this turn's microtasks
 * have run.
 */
function inOneWrite(client: RedisClientish, send: () => void): void {
  const stream = client.stream;
  if (!stream?.writable || typeof stream.cork !== "function" || typeof stream.uncork !== "function") {
    send();
    return;
  }
  stream.cork();
  try {
    send();
  } finally {
    setImmediate(() => stream.uncork?.());
  }
}

/** Calls `call` with the backend's `queue.client` answering its blocking connection instead. */
function onBlockingConnection<T>(facade: object, blockingClient: Promise<RedisClientish>, call: () => T): T | undefined {
  const own = Object.getOwnPropertyDescriptor(facade, "client");
  if (!own?.configurable || !own.get) return undefined;
  Object.defineProperty(facade, "client", { configurable: true, enumerable: own.enumerable ?? true, get: () => blockingClient });
  try {
    return call();
  } finally {
    Object.defineProperty(facade, "client", own);
  }
}

const hasJob = (data: NextJobData | undefined): data is NextJobData => Array.isArray(data) && data[0] !== undefined && data[0] !== null;

/**
 * Trims the Redis round trips of a worker that is mostly idle, which is where
 * a request's latency is decided. BullMQ alone, per request arriving at an
 * idle worker: a blocking wait ends, then a fetch (moveToActive), and another
 * fetch before the job starts; after the job, a wait that ends at once on the
 * marker BullMQ left when it handed out the job, another fetch that finds
 * nothing, and only then a real wait. Here:
 *
 * - **Start at once.** After a fetch returns a job, BullMQ's main loop fetches
 *   again and waits for that answer before it starts the job it already has.
 *   When the replica runs nothing (`isIdle`), that fetch returns nothing
 *   without asking Redis, and the job starts.
 * - **No stale marker.** Each blocking wait is preceded, in the same write, by
 *   a small script that removes the base marker when the wait list and the
 *   prioritized set are empty (leaving the marker of the next delayed job, if
 *   any). It is atomic, so a job added at any moment still leaves its own
 *   marker and ends the wait.
 * - **The fetch rides with the wait.** The fetch (moveToActive) is sent with
 *   the blocking pop, on the same connection. Redis runs it the moment the pop
 *   returns, so the job arrives with the wake-up: one round trip instead of
 *   two. It takes the job with the token the worker then uses. If it found
 *   nothing (another replica was first), the worker fetches as BullMQ would;
 *   if the worker does not ask for it (a delayed job's marker), a job it took
 *   is handed to the worker all the same.
 *
 * The methods are internal to BullMQ: if a release renames them, the worker is
 * left as it is.
 */
export function tuneIdleWorker(worker: WorkerClass, isIdle: () => boolean, keys: MarkerKeys): void {
  const target = worker as unknown as WorkerInternals;
  const { backend } = target;
  const fetchNext = target._getNextJob;
  const workerMoveToActive = target.moveToActive;
  const waitForJob = backend?.waitForJob;
  const backendMoveToActive = backend?.moveToActive;
  if (
    !backend ||
    typeof fetchNext !== "function" ||
    typeof workerMoveToActive !== "function" ||
    typeof waitForJob !== "function" ||
    typeof backendMoveToActive !== "function" ||
    typeof target.drained !== "boolean"
  ) {
    return;
  }
  let skipNextFetch = false;
  /** The token of the fetch in progress: the one a fetch sent with its wait must lock the job with. */
  let fetchToken: string | undefined;
  /** A fetch sent with a blocking wait, not yet handed to the worker. */
  let prefetched: { token: string; data: Promise<NextJobData | undefined> } | undefined;

  target._getNextJob = async (token, opts) => {
    if (skipNextFetch) {
      skipNextFetch = false;
      target.drained = true;
      return undefined;
    }
    fetchToken = token;
    let job: unknown;
    try {
      job = await fetchNext.call(worker, token, opts);
    } finally {
      fetchToken = undefined;
    }
    if (!job && prefetched?.token === token && hasJob(await prefetched.data)) {
      // The wait ended without the worker asking for a job, but the fetch sent with it took one.
      job = await workerMoveToActive.call(worker, token, target.opts.name);
    }
    if (prefetched?.token === token) prefetched = undefined;
    if (job && isIdle()) skipNextFetch = true;
    return job;
  };

  backend.moveToActive = async (token, name) => {
    const ahead = prefetched?.token === token ? prefetched : undefined;
    if (ahead) {
      prefetched = undefined;
      const data = await ahead.data;
      if (hasJob(data)) return data;
    }
    return backendMoveToActive.call(backend, token, name);
  };

  backend.waitForJob = async (blockTimeout) => {
    const token = fetchToken;
    const blockingClient = backend.blockingClient;
    const client = await blockingClient;
    if (!client || !blockingClient) return waitForJob.call(backend, blockTimeout);
    let waiting: Promise<unknown> | undefined;
    inOneWrite(client, () => {
      client.eval(CLEAR_STALE_MARKER, 4, keys.marker, keys.wait, keys.prioritized, keys.delayed).catch(() => undefined);
      // BullMQ sends its blocking pop after one await; the fetch below also sends after one, so it follows the pop.
      waiting = waitForJob.call(backend, blockTimeout);
      if (token !== undefined && backend.queue) {
        const data = onBlockingConnection(backend.queue, blockingClient, () => backendMoveToActive.call(backend, token, target.opts.name));
        if (data) prefetched = { token, data: data.catch(() => undefined) };
      }
    });
    return waiting;
  };
}
