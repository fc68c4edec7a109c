/**
 * Async requests as a requester (a router or a handle) sees them: submit one
 * (a record, then a job of its own in the deployment's queue), read it, wait
 * for it to change, cancel it.
 */
import type { Redis } from "ioredis";
import { FlotillaError, errorMessage } from "../errors.js";
import type { Keys } from "../shared/keys.js";
import type { RequestJob } from "../shared/protocol.js";
import { AsyncRecords, FINISHED, isAsyncId, newAsyncId, type AsyncRequestView } from "../queue/async-requests.js";
import { DeploymentQueues } from "./deployment-queues.js";
import { RequestCounter } from "./request-counter.js";

/** The longest a poll may wait for a change, in seconds. */
export const MAX_WAIT_S = 60;
/** How often a waiting poll reads the record again. */
const POLL_MS = 100;

export interface AsyncSubmitOptions {
  /** Refuse with BACKPRESSURE when this many requests already wait. @default unlimited */
  maxQueued?: number;
  /** Seconds the record is kept after the request finishes. */
  resultTtlS: number;
}

const unavailable = (err: unknown): FlotillaError =>
  err instanceof FlotillaError ? err : new FlotillaError("REDIS_UNAVAILABLE", `Redis did not answer: ${errorMessage(err)}`, { cause: err });

export class AsyncRequestClient {
  private readonly records: AsyncRecords;
  private readonly queues: DeploymentQueues;
  private readonly counter: RequestCounter;
  /** Whether the queues and the counter are this client's own, to close with it. */
  private readonly ownsShared: boolean;

  /** `redis` is shared, not owned; so are `shared` queues and counter when given (a router shares its request path's). */
  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    shared?: { queues: DeploymentQueues; counter: RequestCounter },
  ) {
    this.records = new AsyncRecords(redis, keys);
    this.ownsShared = shared === undefined;
    this.queues = shared?.queues ?? new DeploymentQueues(redis, keys.namespace);
    this.counter = shared?.counter ?? new RequestCounter(redis, keys);
  }

  private queue(deployment: string) {
    return this.queues.get(deployment);
  }

  /** Sets up these deployments' queues ahead of their first request (see DeploymentQueues.prepare). */
  prepare(deployments: Iterable<string>): Promise<void> {
    return this.queues.prepare(deployments);
  }

  /** Queues the request as a job of its own; resolves with its id once both its record and its job are in Redis. */
  async submit(deployment: string, job: RequestJob, options: AsyncSubmitOptions): Promise<string> {
    const queue = this.queue(deployment);
    const id = newAsyncId();
    try {
      if (options.maxQueued !== undefined) {
        const waiting = await queue.waiting();
        if (waiting >= options.maxQueued) {
          throw new FlotillaError("BACKPRESSURE", `deployment '${deployment}' has ${waiting} requests waiting (maxQueuedRequests ${options.maxQueued})`);
        }
      }
      await this.records.create(id, deployment, options.resultTtlS);
    } catch (err) {
      throw unavailable(err);
    }
    try {
      const [jobId] = await queue.addRequests([{ ...job, asyncId: id }]);
      this.counter.add(deployment);
      if (jobId !== undefined) await this.records.setJob(id, jobId);
    } catch (err) {
      await this.records.delete(id).catch(() => undefined);
      throw unavailable(err);
    }
    return id;
  }

  /** The request's record; NOT_FOUND when the id is malformed, unknown or expired. */
  async get(id: string): Promise<AsyncRequestView> {
    if (!isAsyncId(id)) throw notFound(id);
    let view: Awaited<ReturnType<AsyncRecords["read"]>>;
    try {
      view = await this.records.read(id);
    } catch (err) {
      throw unavailable(err);
    }
    if (!view) throw notFound(id);
    const { jobId: _jobId, ...shown } = view;
    return shown;
  }

  /**
   * The record once it differs from now (status or progress) or has finished,
   * or as it stands after `waitS` seconds (at most MAX_WAIT_S).
   */
  async wait(id: string, waitS: number): Promise<AsyncRequestView> {
    const first = await this.get(id);
    const deadline = Date.now() + Math.min(waitS, MAX_WAIT_S) * 1000;
    const seen = JSON.stringify([first.status, first.progress]);
    let view = first;
    while (!FINISHED.has(view.status) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(POLL_MS, Math.max(0, deadline - Date.now()))));
      view = await this.get(id);
      if (JSON.stringify([view.status, view.progress]) !== seen) break;
    }
    return view;
  }

  /** The record once finished, or as it stands after `waitS` seconds (no upper bound: it polls on). */
  async settled(id: string, waitS: number): Promise<AsyncRequestView> {
    const deadline = Date.now() + waitS * 1000;
    let view = await this.get(id);
    while (!FINISHED.has(view.status) && Date.now() < deadline) view = await this.wait(id, (deadline - Date.now()) / 1000);
    return view;
  }

  /**
   * Cancels a queued or running request: a queued one is withdrawn from the
   * queue (and, should a replica take it meanwhile, never run), a running one
   * is aborted by its replica. A finished one stays as it is. Resolves with
   * the record after the cancel.
   */
  async cancel(id: string): Promise<AsyncRequestView> {
    if (!isAsyncId(id)) throw notFound(id);
    try {
      const view = await this.records.read(id);
      if (!view) throw notFound(id);
      const before = await this.records.cancel(id, view.deployment);
      if (before === "queued" && view.jobId !== undefined) await this.queue(view.deployment).remove(view.jobId).catch(() => false);
    } catch (err) {
      throw unavailable(err);
    }
    return this.get(id);
  }

  async close(): Promise<void> {
    if (!this.ownsShared) return;
    await this.counter.close();
    await this.queues.close();
  }
}

function notFound(id: string): FlotillaError {
  return new FlotillaError("NOT_FOUND", `no async request '${id.slice(0, 64)}' (unknown, or its result expired)`);
}
