/**
 * The replica worker's main loop, in place of BullMQ's. BullMQ turns every
 * job it takes into a Job object, runs it through its main loop's queue of
 * promises, its processJob (tracing, events) and its finish (the return
 * value encoded, events), all of which cost a request more JavaScript than
 * its handler. Here, a job that the lean finish can complete (see
 * leanQualifies) is run from its decoded data: its lock is tracked for
 * renewal as BullMQ tracks it, its data goes to the processor, and an
 * Answered result completes it with the lean finish. A worker that takes
 * three or more jobs at once keeps its blocking waits queued ahead
 * (ArmedWaits); one that takes fewer waits as BullMQ does. Everything else
 * BullMQ does as before, by its own methods: the fetch a take leaves to it,
 * the stalled check, lock renewal, a job that is not lean, a processor's
 * error, a result to store as the return value, retries after a connection
 * error, and the drain on close.
 */
import { setTimeout as delay } from "node:timers/promises";
import type { Logger } from "../shared/logger.js";
import { raw2NextJobData, type Job, type Worker } from "./bullmq.js";
import { DirectJobs, directJobsEnabled, type DirectJob } from "./direct-jobs.js";
import { GIVE_BACK } from "./lean-scripts.js";
import type { ReplySockets } from "./reply-sockets.js";
import { ArmedWaits, type NextJobData as ArmedNextJobData, type Taken, type WaitClient } from "./armed-waits.js";
import { missingMembers, warnFallbackOnce } from "./internals-check.js";
import { Answered, leanQualifies, type LeanFinisher } from "./lean-finish.js";
import { leanTake, type RedisClientish } from "./tuned-worker.js";

/** A job as BullMQ's fetch decodes it (rawToJobJson). */
interface JobJson {
  name?: string;
  data?: string;
  opts?: { removeOnComplete?: unknown };
  processedOn?: number;
  parentKey?: string;
  parent?: unknown;
  repeatJobKey?: string;
  deduplicationId?: string;
  deferredFailure?: string;
}

/** BullMQ's decoded fetch answer: the job (none when nothing was taken), its id, the rate-limit delay, the next delayed job's time. */
type NextJobData = [JobJson | null | undefined, (string | number)?, number?, number?];

/** A job the loop runs itself: its data parsed, with what completing it needs. */
class LeanJob {
  constructor(
    readonly json: JobJson,
    readonly id: string,
    readonly token: string,
    readonly data: unknown,
  ) {}
}

interface LoopInternals {
  id: string;
  concurrency: number;
  closing?: unknown;
  paused?: boolean;
  drained: boolean;
  opts: { runRetryDelay?: number; maxStartedAttempts?: number; metrics?: unknown; removeOnComplete?: unknown; drainDelay?: number; name?: string; lockDuration?: number };
  mainLoop(): Promise<void>;
  moveToActive(token: string, name?: string): Promise<unknown>;
  _getNextJob(token: string, opts?: { block?: boolean }): Promise<unknown>;
  updateDelays(limitDelay?: number, delayUntil?: number): void;
  nextJobFromJobData(data: JobJson | null | undefined, id: unknown, token: string): Promise<Job | undefined>;
  processJob(job: Job, token: string, fetchNext?: () => boolean): Promise<unknown>;
  createJob(data: JobJson, id: string): Job;
  handleCompleted(result: unknown, job: Job, token: string, fetchNext?: () => boolean): Promise<unknown>;
  handleFailed(err: Error, job: Job, token: string, fetchNext?: () => boolean): Promise<unknown>;
  retryIfFailed<T>(fn: () => Promise<T>, opts: { delayInMs?: number; onlyEmitError?: boolean }): Promise<T | undefined>;
  waitForRateLimit(): Promise<void>;
  lockManager: { trackJob(id: string, token: string, ts?: number): unknown; untrackJob(id: string): void };
  emit(event: "error", err: Error): boolean;
  backend: {
    moveToActive(token: string, name?: string): Promise<NextJobData>;
    blockingClient?: Promise<WaitClient>;
    reconnectBlocking?: () => Promise<void>;
    queue?: { client?: Promise<RedisClientish>; keys?: Record<string, string> };
  };
}

/** What the loop calls or replaces on a BullMQ Worker. */
const LOOP_INTERNALS = {
  mainLoop: "function",
  moveToActive: "function",
  _getNextJob: "function",
  updateDelays: "function",
  nextJobFromJobData: "function",
  processJob: "function",
  createJob: "function",
  handleCompleted: "function",
  handleFailed: "function",
  retryIfFailed: "function",
  waitForRateLimit: "function",
  emit: "function",
  drained: "boolean",
  "lockManager.trackJob": "function",
  "lockManager.untrackJob": "function",
  "backend.moveToActive": "function",
} as const;

/** The internals of `worker` the loop relies on that it lacks (empty: all there). */
export function missingLoopInternals(worker: object): string[] {
  return missingMembers(worker, LOOP_INTERNALS);
}

/** A finish never fetches the next job: the loop fetches. */
const noFetch = (): boolean => false;

/** Waits a replica keeps queued at most (see ArmedWaits): a few requests' worth. */
export const ARMED_WAITS = 8;

/**
 * The fewest concurrent jobs a replica takes for its waits to be queued
 * ahead: with fewer, a queued wait would hold a slot the replica needs to
 * fetch by itself (a delayed or prioritized job, which the lean take leaves
 * to BullMQ's fetch).
 */
export const ARMED_MIN_CONCURRENCY = 3;

/**
 * Waits are queued ahead only while jobs take less than this (the median of
 * the last RECENT_RUNS runs): a replica's queued waits take a burst of jobs
 * together, which for slow jobs would pile them on one replica while another
 * is free (as batch jobs are kept to fast deployments for the same reason).
 */
export const ARMED_BELOW_MS = 5;

/** How many of its last runs a replica weighs to tell fast jobs from slow ones (see serviceMs in leanLoop). */
const RECENT_RUNS = 5;

/** The median of `values` (of two middle ones, the lower); undefined for none. */
function lowerMedian(values: readonly number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

/** The waits queued ahead for `w`, when its fetch can be: the lean take, a blocking connection, a marker. */
function armedWaits(w: LoopInternals, log?: Logger): ArmedWaits | undefined {
  if (process.env.FLOTILLA_ARMED_WAITS === "off") return undefined;
  const take = leanTake(w);
  const marker = w.backend.queue?.keys?.marker;
  if (!take || !marker || typeof w.backend.reconnectBlocking !== "function" || !("blockingClient" in w.backend)) return undefined;
  return new ArmedWaits({
    blockingClient: () => w.backend.blockingClient,
    client: () => w.backend.queue?.client,
    marker,
    take,
    blockTimeoutS: () => w.opts.drainDelay ?? 5,
    reconnect: () => w.backend.reconnectBlocking?.() ?? Promise.resolve(),
    log,
  });
}

/**
 * Installs the loop on `worker` (before it runs: BullMQ starts its main
 * loop after an await, so right after construction is in time; and before
 * the idle tuning, which calls the worker's fetch it finds; the tuning's
 * `isIdle` should then answer false: the loop starts a job at once and
 * waits after a lean take by itself). `process` runs
 * a job's data, as the worker's processor does for the jobs BullMQ runs.
 * Returns a function to call when the worker's concurrency was raised (the
 * loop waiting for a free slot takes more at once), or undefined when the
 * loop could not be installed (the worker stays plain BullMQ's, said once,
 * loudly).
 */
export function leanLoop(
  worker: Worker,
  process: (data: unknown) => Promise<unknown>,
  finisher: LeanFinisher,
  log?: Logger,
  /** Requests handed over directly by requesters (see direct-jobs.ts), for the deployment's replica. */
  direct?: { sockets: ReplySockets; deployment: string },
): (() => void) | undefined {
  const missing = missingLoopInternals(worker);
  warnFallbackOnce("the lean main loop", missing, log);
  const finish = finisher.finish;
  if (missing.length > 0 || !finish) return undefined;
  const w = worker as unknown as LoopInternals;
  const retry = { delayInMs: w.opts.runRetryDelay, onlyEmitError: true };

  const isLean = (json: JobJson): boolean =>
    !json.deferredFailure && !w.opts.maxStartedAttempts && leanQualifies(json, json.opts?.removeOnComplete, w.opts);

  /** The job of a fetch's answer: a LeanJob, BullMQ's Job, or none. */
  const fromData = async (answer: NextJobData | ArmedNextJobData, token: string): Promise<unknown> => {
    const [json, id, limitDelay, delayUntil] = answer as NextJobData;
    w.updateDelays(limitDelay, delayUntil);
    if (json && id !== undefined && isLean(json)) {
      let data: unknown;
      try {
        data = JSON.parse(json.data ?? "{}");
      } catch {
        // Data that is not JSON: BullMQ's own handling (its Job cannot be made either).
        return w.nextJobFromJobData(json, id, token);
      }
      // The next fetch is a wait (its take in the same write): the lean take left the marker that ends it at once when more jobs wait.
      w.drained = true;
      return new LeanJob(json, String(id), token, data);
    }
    return w.nextJobFromJobData(json, id, token);
  };
  w.moveToActive = async (token, name) => fromData(await w.backend.moveToActive(token, name), token);

  /** The BullMQ Job of `job`, for the finishes that are BullMQ's. */
  const asJob = (job: LeanJob): Job => {
    const bull = w.createJob(job.json, job.id);
    bull.token = job.token;
    return bull;
  };

  /**
   * The lean jobs' running time: the median of the last RECENT_RUNS runs
   * (undefined until one ran). Waits are queued ahead, and slots offered,
   * only for fast ones; a median, so that a pause of the process (a GC, a
   * busy machine) in one or two runs does not end that, and slow runs do.
   */
  let serviceMs: number | undefined;
  const recentRuns: number[] = [];
  let runsSeen = 0;
  const runLean = async (job: LeanJob): Promise<void> => {
    const { id, token } = job;
    w.lockManager.trackJob(id, token, job.json.processedOn);
    try {
      let result: unknown;
      const began = performance.now();
      try {
        result = await process(job.data);
        recentRuns[runsSeen++ % RECENT_RUNS] = performance.now() - began;
        serviceMs = lowerMedian(recentRuns);
      } catch (err) {
        w.lockManager.untrackJob(id);
        const bull = asJob(job);
        await w.retryIfFailed(() => w.handleFailed(err instanceof Error ? err : new Error(String(err)), bull, token, noFetch), retry);
        return;
      }
      // As BullMQ does: the lock is no longer renewed once the finish is under way.
      w.lockManager.untrackJob(id);
      if (result instanceof Answered) {
        // A finish cut by the worker closing (it goes on the blocking connection, which close() disconnects) still reaches Redis: the socket is ended, not destroyed, so what was written is sent.
        // Nothing may go on the blocking connection behind queued waits: the finish then goes on the other one, and may be held back.
        await w.retryIfFailed(() => finish(id, token, result, armed !== undefined && armed.count > 0), retry);
      } else {
        const bull = asJob(job);
        await w.retryIfFailed(() => w.handleCompleted(result, bull, token, noFetch), retry);
      }
    } finally {
      w.lockManager.untrackJob(id);
    }
  };

  let slotFreed: (() => void) | undefined;
  const wake = (): void => {
    const resolve = slotFreed;
    slotFreed = undefined;
    resolve?.();
  };

  let armed = armedWaits(w, log);
  let tokenPostfix = 0;
  const nextToken = (): string => `${w.id}:${tokenPostfix++}`;

  /** Jobs running: those the loop took, and those handed over directly. */
  const running = new Set<Promise<unknown>>();
  /** Whether the main loop runs (takes jobs). */
  let looping = false;

  /** Starts `job`, taken with `token`, counted in `running` until it is done; `peer`: the requester that handed it over. */
  const start = (job: unknown, token: string, peer?: string): void => {
    const run: Promise<unknown> = (job instanceof LeanJob ? runLean(job) : w.processJob(job as Job, token, noFetch))
      .catch((err: unknown) => w.emit("error", err instanceof Error ? err : new Error(String(err))))
      .finally(() => {
        running.delete(run);
        if (peer !== undefined) directJobs?.done(peer);
        wake();
      });
    running.add(run);
  };

  const directJobs = directReceiver(w, direct, log, (job) => {
    if (!looping || w.closing) return false;
    // directReceiver made this receiver only with BullMQ's decoder there.
    const decoded = (raw2NextJobData as (raw: unknown) => unknown[])([job.fields, job.id, 0, 0]) as NextJobData;
    void fromData(decoded, job.token).then(
      (taken) => {
        if (taken) start(taken, job.token, job.peer);
        else directJobs?.done(job.peer);
      },
      (err: unknown) => {
        directJobs?.done(job.peer);
        w.emit("error", err instanceof Error ? err : new Error(String(err)));
      },
    );
    return true;
  });
  /** Slots the waits leave free: those offered to requesters and not in use. */
  const held = (): number => directJobs?.held() ?? 0;
  /** Offers slots while waits are queued ahead (fast jobs): a slot or two per requester, a third of the concurrency at most. */
  const offerSlots = (ahead: boolean): void => {
    if (!directJobs) return;
    if (!ahead || w.closing) return directJobs.offer(0, 0);
    const perPeer = w.concurrency >= 6 ? 2 : 1;
    directJobs.offer(perPeer, Math.max(1, Math.floor(w.concurrency / (3 * perPeer))));
  };

  /**
   * The next job from the waits queued ahead (see ArmedWaits), topped up
   * first to what the free slots allow; undefined when none was taken. A
   * wait whose take found nothing (the queue paused, a prioritized or due
   * delayed job, another replica first) is followed by BullMQ's fetch.
   */
  const nextArmed = async (queue: ArmedWaits, free: () => number): Promise<{ job: unknown; token: string } | undefined> => {
    if (queue.count > 0 && queue.count * 2 <= Math.min(free(), ARMED_WAITS)) {
      // Waits are still queued: the top-up can follow the answer of the job just started, off its path.
      await new Promise((resolve) => setImmediate(resolve));
    }
    const target = Math.min(free(), ARMED_WAITS);
    if (queue.count * 2 <= target && target > queue.count) {
      const tokens = Array.from({ length: target - queue.count }, nextToken);
      const sent = await queue.arm(tokens).catch((err: unknown) => {
        if (!w.closing) w.emit("error", err instanceof Error ? err : new Error(String(err)));
        return undefined;
      });
      if (sent === undefined) {
        if (!w.closing) await delay(w.opts.runRetryDelay ?? 1_000);
        return undefined;
      }
      if (!sent) {
        // Waits cannot be queued on this connection: one at a time, as BullMQ waits.
        armed = undefined;
        return undefined;
      }
      // The finishes held back go in the same turn: Redis reads them with the waits, in one wake-up.
      finisher.flush?.();
    }
    const taken: Taken | undefined = await queue.next();
    if (!taken) {
      if (!w.closing) await delay(w.opts.runRetryDelay ?? 1_000);
      return undefined;
    }
    if (taken.data && taken.data[0]) return { job: await fromData(taken.data, taken.token), token: taken.token };
    const answer = await w.retryIfFailed(() => w.backend.moveToActive(taken.token, w.opts.name), retry);
    const job = answer ? await fromData(answer, taken.token) : undefined;
    // The worker's blockUntil is not read back: a BullMQ finish running meanwhile resets it.
    if (!job) nudgeWhenDue(queue, Number(answer?.[3] ?? 0));
    return job ? { job, token: taken.token } : undefined;
  };

  /**
   * A delayed job's wait: BullMQ's fetch, which promotes delayed jobs, said
   * when the next is due; a base marker then ends a queued wait, whose take
   * finds the job due and leaves it to BullMQ's fetch.
   */
  let nudge: NodeJS.Timeout | undefined;
  let nudgeAt = 0;
  const nudgeWhenDue = (queue: ArmedWaits, due: number): void => {
    if (!(due > 0) || (nudge && nudgeAt <= due)) return;
    clearTimeout(nudge);
    nudgeAt = due;
    nudge = setTimeout(() => {
      nudge = undefined;
      const marker = w.backend.queue?.keys?.marker;
      if (w.closing || queue.count === 0 || !marker) return;
      w.backend.queue?.client?.then((c) => (c as unknown as { zadd(key: string, score: number, member: string): Promise<unknown> }).zadd(marker, 0, "0")).catch(() => undefined);
    }, Math.max(0, due - Date.now()));
    nudge.unref?.();
  };

  w.mainLoop = async () => {
    looping = true;
    try {
      await loop();
    } finally {
      looping = false;
      offerSlots(false);
    }
  };
  const loop = async (): Promise<void> => {
    while (!w.closing && !w.paused) {
      // Waits already queued are handed out even above a concurrency just lowered: each may hold a locked job.
      const queued = armed !== undefined && armed.count > 0;
      if (running.size + held() >= w.concurrency && !queued) {
        await new Promise<void>((resolve) => (slotFreed = resolve));
        continue;
      }
      const ahead = w.concurrency >= ARMED_MIN_CONCURRENCY && serviceMs !== undefined && serviceMs < ARMED_BELOW_MS;
      offerSlots(ahead && armed !== undefined);
      if (armed && (ahead || queued)) {
        const next = await nextArmed(armed, () => (ahead ? Math.max(0, w.concurrency - running.size - held()) : 0));
        if (next) start(next.job, next.token);
        continue;
      }
      const token = nextToken();
      // A connection error waits runRetryDelay and fetches again; any other is emitted, and the loop goes on.
      const job = await w.retryIfFailed(() => w._getNextJob(token, { block: true }), retry);
      if (!job) {
        await w.waitForRateLimit();
        continue;
      }
      // Started in this turn: a fast handler's finish is sent ahead of the wait the next fetch sends.
      start(job, token);
    }
    // Requesters hand over no more: what reaches it from now on is given back.
    offerSlots(false);
    if (armed && w.closing) {
      // The blocking connection is closed: what its waits took before that runs here.
      for (const taken of await armed.drain()) {
        const job = taken.data ? await fromData(taken.data, taken.token) : undefined;
        if (job) start(job, taken.token);
      }
    }
    await Promise.all(running);
    await finisher.flush?.();
  };
  return wake;
}

/** The receiver of jobs handed over directly, for `w`; undefined without sockets or when a job cannot be given back. */
function directReceiver(w: LoopInternals, direct: { sockets: ReplySockets; deployment: string } | undefined, log: Logger | undefined, run: (job: DirectJob) => boolean): DirectJobs | undefined {
  const keys = w.backend.queue?.keys;
  const lockMs = w.opts.lockDuration;
  if (!direct || !keys || typeof lockMs !== "number" || typeof raw2NextJobData !== "function" || !directJobsEnabled()) return undefined;
  const { active, wait, marker, meta } = keys;
  const prefix = keys[""];
  if (active === undefined || wait === undefined || marker === undefined || meta === undefined || prefix === undefined) return undefined;
  return new DirectJobs({
    sockets: direct.sockets,
    deployment: direct.deployment,
    worker: w.id,
    lockMs,
    run,
    giveBack: async (job) => {
      const client = await w.backend.queue?.client;
      if (!client) throw new Error("no connection");
      return GIVE_BACK.run(client as never, [active, wait, marker, meta, `${prefix}${job.id}`], [job.id, job.token]);
    },
    ...(log ? { log } : {}),
  });
}
