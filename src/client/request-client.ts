/**
 * Sends requests to deployments and waits for their answers: the request path
 * shared by routers and deployment handles. A request is a BullMQ job before
 * anyone waits on it; the answer comes back on this requester's own reply list,
 * so a requester reads only its own replies, never the queue's events.
 */
import { Queue, jobAdder, type JobAdder } from "../shared/bullmq-classes.js";
import type { Redis } from "ioredis";
import { v4 as uuidv4 } from "uuid";
import { FlotillaError, errorMessage } from "../errors.js";
import { Keys } from "../shared/keys.js";
import type { BatchJob, Reply, RequestJob } from "../shared/protocol.js";
import { Batcher } from "../shared/batcher.js";
import { closeRedis, createRedis, waitReady } from "../shared/redis.js";
import { DemandReporter } from "../shared/requester-demand.js";

/** Job options every request gets: no completed job kept; failed ones kept until the controller answers them. */
export const REQUEST_JOB_OPTIONS = { removeOnComplete: true, removeOnFail: false } as const;

/**
 * Requests that arrive together go into one batch job when the deployment's
 * handler answers within this many ms on average: a batch costs Redis one job
 * instead of one per request, and with handlers this fast a batch never holds
 * requests back for long. Slower deployments get one job per request.
 */
export const BATCH_BELOW_MS = 5;
/** The most requests one batch job carries. */
export const MAX_BATCH = 64;

export interface RequestClientOptions {
  redisUrl: string;
  namespace: string;
  /** Shown in reply-list keys and logs. @default "client-<uuid>" */
  id?: string;
}

export interface SubmitOptions {
  /** Reject with TIMEOUT after this long. @default 60000 */
  timeoutMs?: number;
  /** Refuse with BACKPRESSURE when this many requests already wait. @default unlimited */
  maxQueued?: number;
}

/** A deployment's queue, with its adders of single requests and of batches. */
interface DeploymentQueue {
  queue: Queue;
  requests: JobAdder;
  batches: JobAdder;
}

interface Pending {
  deployment: string;
  resolve(reply: Reply): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

export class RequestClient {
  readonly id: string;
  private readonly keys: Keys;
  /** Commands fail fast while Redis is down so callers can answer 503 at once. */
  private readonly redis: Redis;
  /** Dedicated to the blocking reply reads. */
  private readonly replyReader: Redis;
  private readonly queues = new Map<string, DeploymentQueue>();
  private readonly pending = new Map<string, Pending>();
  private readonly replyKey: string;
  private nextRequest = 0;
  /** Per deployment: moving average of the handler's time (ms), from the replies' `ms`. */
  private readonly serviceMs = new Map<string, number>();
  /** Deployments whose requests come with maxQueued: one job each, so the wait list counts requests exactly. */
  private readonly unbatched = new Set<string>();
  /** Requests for one deployment that arrive together are added in one round trip. */
  private readonly adds = new Batcher<string, RequestJob, string | undefined>((deployment, jobs) => this.addJobs(deployment, jobs));
  /** The requests waited on per deployment, written to Redis for the autoscaler. */
  private readonly demand: DemandReporter;
  private closed = false;
  private everReady = false;
  private readerLoop: Promise<void> | undefined;

  constructor(options: RequestClientOptions) {
    this.id = options.id ?? `client-${uuidv4()}`;
    this.keys = new Keys(options.namespace);
    this.redis = createRedis(options.redisUrl, { mode: "failFast", name: `flotilla-${this.id}` });
    this.replyReader = createRedis(options.redisUrl, { name: `flotilla-${this.id}-replies` });
    this.replyKey = this.keys.replies(this.id);
    this.redis.once("ready", () => (this.everReady = true));
    this.demand = new DemandReporter(this.redis, this.keys, this.id);
  }

  get inflight(): number {
    return this.pending.size;
  }

  /** The connection requests are added on (for health checks). */
  get connection(): Redis {
    return this.redis;
  }

  private queue(deployment: string): DeploymentQueue {
    let entry = this.queues.get(deployment);
    if (!entry) {
      const queue = new Queue(this.keys.queueName(deployment), { connection: this.redis, prefix: this.keys.queuePrefix });
      queue.on("error", () => undefined);
      entry = { queue, requests: jobAdder(queue, "request", REQUEST_JOB_OPTIONS), batches: jobAdder(queue, "batch", REQUEST_JOB_OPTIONS) };
      this.queues.set(deployment, entry);
    }
    return entry;
  }

  /** Enqueues one request and resolves with its reply. */
  async submit(deployment: string, job: RequestJob, options: SubmitOptions = {}): Promise<Reply> {
    if (this.closed) throw new FlotillaError("INTERNAL", "the request client is closed");
    this.ensureReader();
    if (this.redis.status !== "ready") await this.whenConnected();
    if (options.maxQueued === undefined) this.unbatched.delete(deployment);
    else {
      this.unbatched.add(deployment);
      const waiting = await this.redis.llen(this.keys.queueKey(deployment, "wait"));
      if (waiting >= options.maxQueued) {
        throw new FlotillaError("BACKPRESSURE", `deployment '${deployment}' has ${waiting} requests waiting (maxQueuedRequests ${options.maxQueued})`);
      }
    }
    const requestId = String(this.nextRequest++);
    const timeoutMs = options.timeoutMs ?? 60_000;
    const answer = new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.settle(requestId);
        reject(new FlotillaError("TIMEOUT", `no answer from deployment '${deployment}' within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(requestId, { deployment, resolve, reject, timer });
      this.demand.change(deployment, 1);
    });
    let jobId: string | undefined;
    try {
      jobId = await this.adds.add(deployment, { ...job, replyTo: this.replyKey, requestId }, this.pending.size === 1);
    } catch (err) {
      this.settle(requestId);
      answer.catch(() => undefined);
      throw new FlotillaError("REDIS_UNAVAILABLE", `could not enqueue the request: ${errorMessage(err)}`, { cause: err });
    }
    try {
      return await answer;
    } catch (err) {
      if (err instanceof FlotillaError && err.code === "TIMEOUT" && jobId) void this.withdraw(deployment, jobId);
      throw err;
    }
  }

  /**
   * A first connection still being set up is waited for briefly; a connection
   * that was lost (Redis down) fails at once so callers can answer 503.
   */
  private async whenConnected(): Promise<void> {
    const status = this.redis.status;
    if ((status === "wait" || status === "connecting" || status === "connect") && !this.everReady) {
      await waitReady(this.redis, 2000).catch(() => undefined);
    }
    if (this.redis.status !== "ready") {
      throw new FlotillaError("REDIS_UNAVAILABLE", `Redis is not reachable (connection ${this.redis.status}); the request was not accepted`);
    }
  }

  /**
   * Adds the requests of one turn: one job each, in one round trip; or, for a
   * fast deployment, batch jobs. Resolves with each request's job id, or
   * undefined for a request in a batch (it shares its job with others).
   */
  private async addJobs(deployment: string, jobs: RequestJob[]): Promise<Array<string | undefined>> {
    const { requests, batches } = this.queue(deployment);
    if (jobs.length > 1 && !this.unbatched.has(deployment) && (this.serviceMs.get(deployment) ?? Infinity) < BATCH_BELOW_MS) {
      const data: BatchJob[] = [];
      for (let i = 0; i < jobs.length; i += MAX_BATCH) data.push({ kind: "batch", requests: jobs.slice(i, i + MAX_BATCH) });
      await batches(data);
      return jobs.map(() => undefined);
    }
    return requests(jobs);
  }

  /** A timed-out request that no replica has taken yet is removed, so nobody runs it for nobody. */
  private async withdraw(deployment: string, jobId: string): Promise<void> {
    try {
      await this.redis.lrem(this.keys.queueKey(deployment, "wait"), 1, jobId);
    } catch {
      // Best effort: if it runs later, its reply expires unread.
    }
  }

  private ensureReader(): void {
    if (!this.readerLoop) this.readerLoop = this.readReplies();
  }

  private async readReplies(): Promise<void> {
    while (!this.closed) {
      try {
        const res = (await this.replyReader.call("BLMPOP", "1", "1", this.replyKey, "LEFT", "COUNT", "512")) as [string, string[]] | null;
        if (!res) continue;
        for (const raw of res[1]) this.deliver(raw);
        // Let the requests just answered write their responses before the next BLMPOP's write.
        await new Promise((resolve) => setImmediate(resolve));
      } catch {
        if (this.closed) break;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  private deliver(raw: string): void {
    let reply: Reply;
    try {
      reply = JSON.parse(raw) as Reply;
    } catch {
      return;
    }
    const id = reply.requestId;
    if (id === undefined) return;
    const entry = this.pending.get(id);
    if (!entry) return; // timed out already, or a duplicate answer after a retry
    if (reply.ms !== undefined) {
      const avg = this.serviceMs.get(entry.deployment);
      this.serviceMs.set(entry.deployment, avg === undefined ? reply.ms : avg * 0.7 + reply.ms * 0.3);
    }
    this.settle(id);
    entry.resolve(reply);
  }

  /** Forgets a request that was answered, failed or timed out. */
  private settle(id: string): void {
    const entry = this.pending.get(id);
    if (!entry) return;
    clearTimeout(entry.timer);
    this.pending.delete(id);
    this.demand.change(entry.deployment, -1);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const [id, entry] of this.pending) {
      this.settle(id);
      entry.reject(new FlotillaError("INTERNAL", "the request client closed before the answer came"));
    }
    await this.demand.stop();
    await Promise.all([...this.queues.values()].map(({ queue }) => queue.close().catch(() => undefined)));
    this.replyReader.disconnect();
    await this.readerLoop?.catch(() => undefined);
    await closeRedis(this.redis);
  }
}
