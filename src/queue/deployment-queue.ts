/**
 * One deployment's queue as requesters and the leader's janitor use it: add
 * requests (one job each, or batch jobs), withdraw one nobody took, count what
 * waits, and list, remove or drop the jobs no replica will answer.
 */
import type { Redis } from "ioredis";
import type { BatchJob, RequestJob } from "../shared/protocol.js";
import { Queue, type Job, type JobsOptions } from "./bullmq.js";
import { jobAdder, type JobAdder, type TakenAdd } from "./job-adder.js";
import { GIVE_BACK } from "./lean-scripts.js";
import { QueueKeys, type DeploymentKeys } from "./queue-keys.js";

/** Job options every request gets: no completed job kept; failed ones kept until the controller answers them. */
export const REQUEST_JOB_OPTIONS = { removeOnComplete: true, removeOnFail: false } as const satisfies JobsOptions;

/** A job as the janitor sees it: its data as stored (not validated), and why it failed, if it did. */
export interface StoredJob {
  id: string;
  data: unknown;
  failedReason?: string;
}

const stored = (job: Job): StoredJob => ({ id: String(job.id), data: job.data as unknown, ...(job.failedReason ? { failedReason: job.failedReason } : {}) });

export class DeploymentQueue {
  private readonly queue: Queue;
  private readonly connection: Redis;
  private readonly keys: DeploymentKeys;
  private readonly requests: JobAdder;
  private readonly batches: JobAdder;

  /** `connection` is shared, not owned: close() leaves it open. */
  constructor(connection: Redis, namespace: string, deployment: string) {
    this.connection = connection;
    const queueKeys = new QueueKeys(namespace);
    this.keys = queueKeys.of(deployment);
    this.queue = new Queue(queueKeys.name(deployment), { connection, prefix: queueKeys.prefix });
    // Command errors reach the caller of each method; the queue's own error events have no one to tell.
    this.queue.on("error", () => undefined);
    this.requests = jobAdder(this.queue, "request", REQUEST_JOB_OPTIONS);
    this.batches = jobAdder(this.queue, "batch", REQUEST_JOB_OPTIONS);
  }

  /**
   * Resolves once the queue's first add needs no set-up of its own: BullMQ
   * defines its scripts on the connection and reads Redis's version (a round
   * trip) before a queue's first command.
   */
  async ready(): Promise<void> {
    await this.queue.waitUntilReady();
  }

  /**
   * Adds one job per request, in one round trip; resolves with their ids in
   * order. `via`: sent on that connection, in this turn (see JobAdder).
   */
  addRequests(jobs: readonly RequestJob[], via?: Redis): Promise<string[]> {
    return this.requests([...jobs], via);
  }

  /**
   * Adds one request's job and takes it for `token` when nothing would be
   * taken before it (see ADD_TAKE); else it waits in the queue. Only when
   * takesOnAdd: otherwise it rejects, and the job is added the usual way.
   */
  addTaken(job: RequestJob, token: string, lockMs: number, via?: Redis): Promise<TakenAdd> {
    const addTake = this.requests.addTake;
    if (!addTake) return Promise.reject(new Error("this queue cannot add and take a job in one script yet"));
    return addTake(job, token, lockMs, via);
  }

  /** Whether addTaken can be used now (the queue is ready and its lean add available). */
  get takesOnAdd(): boolean {
    return this.requests.addTake !== undefined;
  }

  /** Gives back a job taken for `token` that its holder will not run (see GIVE_BACK); resolves with whether it was. */
  async giveBack(jobId: string, token: string): Promise<boolean> {
    const k = this.keys;
    return Number(await GIVE_BACK.run(this.connection, [k.active, k.wait, k.marker, k.meta, `${k.jobPrefix}${jobId}`], [jobId, token])) === 1;
  }

  /** Adds batch jobs, in one round trip; resolves with their ids in order. `via` as for addRequests. */
  addBatches(jobs: readonly BatchJob[], via?: Redis): Promise<string[]> {
    return this.batches([...jobs], via);
  }

  /** Jobs waiting to be taken (prioritized and delayed ones aside: requests have neither). */
  async waiting(): Promise<number> {
    return this.connection.llen(this.keys.wait);
  }

  /**
   * Removes a job no replica holds (a request withdrawn, a failed job
   * answered), wherever it waits, with everything BullMQ keeps of it: its
   * hash, logs, and place in the wait list. A job a replica holds (locked)
   * stays. One round trip; resolves with whether it was removed.
   */
  async remove(jobId: string): Promise<boolean> {
    return (await this.queue.remove(jobId, { removeChildren: false })) === 1;
  }

  /** Jobs that failed for good (their replica died more than maxRetries times), oldest first, at most `limit`. */
  async failed(limit: number): Promise<StoredJob[]> {
    return (await this.queue.getFailed(0, limit - 1)).map(stored);
  }

  /** Every job not yet answered by a replica: waiting, delayed, prioritized or failed. */
  async unanswered(): Promise<StoredJob[]> {
    return (await this.queue.getJobs(["wait", "prioritized", "delayed", "failed"], 0, -1)).map(stored);
  }

  /** Deletes the queue's every key, jobs in progress included. */
  async obliterate(): Promise<void> {
    await this.queue.obliterate({ force: true });
  }

  /** Stops taking jobs' events; the shared connection stays open. */
  async close(): Promise<void> {
    await this.queue.close();
  }
}
