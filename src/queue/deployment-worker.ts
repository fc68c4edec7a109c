/**
 * A replica's consumer of its deployment's queue: a BullMQ worker with the
 * replica's options, the idle tuning and the lean finish, handing each job's
 * data to the replica and storing what it returns as the job's return value
 * (an Answered result completes with its replies, see lean-finish.ts).
 */
import type { Redis } from "ioredis";
import { Keys } from "../shared/keys.js";
import type { Logger } from "../shared/logger.js";
import { Worker, type Job, type WorkerOptions } from "./bullmq.js";
import { Answered, leanFinish } from "./lean-finish.js";
import { leanLoop } from "./lean-loop.js";
import { QueueKeys } from "./queue-keys.js";
import { ReplyLists } from "./reply-lists.js";
import type { ReplySockets } from "./reply-sockets.js";
import { tuneIdleWorker, WaitLane } from "./tuned-worker.js";

export { Answered } from "./lean-finish.js";

/** What the worker may change while it runs. */
export interface WorkerSettings {
  /** Jobs run at once. */
  concurrency: number;
  /** Times a job whose replica died is run again before it fails. */
  maxRetries: number;
}

export interface DeploymentWorkerOptions extends WorkerSettings {
  /** Used by the worker only (BullMQ adds a blocking connection of its own). */
  connection: Redis;
  namespace: string;
  deployment: string;
  /**
   * Runs one job, given its data as stored (validate it). An Answered
   * result's replies are pushed to its reply list (which the caller checked)
   * together with the job's completion. A forced close does not abort it:
   * the caller aborts what it runs (BullMQ aborts a job's signal only on
   * cancelJob, which nothing calls, and makes one per job when asked for it).
   */
  process(data: unknown): Promise<unknown>;
  /** True while the replica runs nothing: the idle tuning starts a job it has at once. */
  isIdle(): boolean;
  /** Answers go over requesters' reply sockets when they have one (see reply-sockets.ts). */
  replySockets?: ReplySockets;
  log: Logger;
}

/**
 * Locks last 15 s (renewed every 7.5 s), so a job whose replica vanished
 * without its host noticing is retried after at most ~17 s; when the host does
 * notice (the usual case), it releases the locks at once and the stalled check,
 * which runs every second across the queue, requeues the job. A crash counts
 * against maxRetries.
 */
export function workerOptions(settings: WorkerSettings): Omit<WorkerOptions, "connection"> {
  return {
    concurrency: settings.concurrency,
    lockDuration: 15_000,
    stalledInterval: 1_000,
    maxStalledCount: settings.maxRetries,
    removeOnComplete: { count: 0 },
    // After a Redis outage, take jobs again within a second of Redis answering (BullMQ's default waits 15 s).
    runRetryDelay: 1_000,
    autorun: true,
  };
}

export class DeploymentWorker {
  private readonly worker: Worker;
  /** Hands an Answered result to the lean finish (set right after the worker: no job runs before). */
  private answer: (job: Job, answered: Answered) => Promise<unknown> = async (_job, answered) => answered.returnValue;
  /** Wakes the lean loop when it waits for a free slot (see leanLoop). */
  private readonly concurrencyRaised: () => void;

  constructor(options: DeploymentWorkerOptions) {
    const keys = new QueueKeys(options.namespace);
    this.worker = new Worker(
      keys.name(options.deployment),
      async (job) => {
        const result = await options.process(job.data);
        return result instanceof Answered ? this.answer(job, result) : result;
      },
      { ...workerOptions(options), connection: options.connection, prefix: keys.prefix },
    );
    const sockets = options.replySockets;
    const replyLists = new ReplyLists(options.connection, new Keys(options.namespace), sockets);
    const lane = new WaitLane();
    const send = sockets ? (list: string, replies: readonly string[]) => sockets.send(list, replies) : undefined;
    const finisher = leanFinish(this.worker, (list, replies) => replyLists.push(list, replies), options.log, lane, send);
    this.answer = finisher.answer;
    // Before the tuning, whose fetch calls the worker's fetch it finds installed.
    const raised = leanLoop(this.worker, options.process, finisher, options.log, sockets ? { sockets, deployment: options.deployment } : undefined);
    this.concurrencyRaised = raised ?? (() => undefined);
    tuneIdleWorker(this.worker, raised ? () => false : options.isIdle, keys.of(options.deployment), options.log, lane);
  }

  /** BullMQ's worker id: the job locks it holds start with it (see releaseWorkerLocks). */
  get id(): string {
    return this.worker.id;
  }

  /** Resolves once both of the worker's connections are ready. */
  async ready(): Promise<void> {
    await this.worker.waitUntilReady();
  }

  onError(listener: (err: Error) => void): void {
    this.worker.on("error", listener);
  }

  apply(settings: WorkerSettings): void {
    this.worker.concurrency = settings.concurrency;
    this.worker.opts.maxStalledCount = settings.maxRetries;
    this.concurrencyRaised();
  }

  /** Takes no new jobs; resolves once the running ones have finished, or at once with `force` (their locks lapse). */
  close(force = false): Promise<void> {
    return this.worker.close(force);
  }
}
