/**
 * Sends requests to deployments and waits for their answers: the request path
 * shared by routers and deployment handles. A request is a job in the
 * deployment's queue before anyone waits on it; the answer comes back on this
 * requester's own reply list, so a requester reads only its own replies, never
 * the queue's events.
 */
import type { Redis } from "ioredis";
import { v4 as uuidv4 } from "uuid";
import { FlotillaError, errorMessage } from "../errors.js";
import { Keys } from "../shared/keys.js";
import type { BatchJob, Reply, RequestJob } from "../shared/protocol.js";
import { Batcher } from "../shared/batcher.js";
import { closeRedis, createRedis, waitReady } from "../shared/redis.js";
import { DeploymentQueues } from "./deployment-queues.js";
import { DemandReporter } from "../queue/requester-demand.js";
import { publishCancel, StreamReaderChannel } from "../queue/stream-channel.js";
import { BlockingPool } from "./blocking-pool.js";
import { ReplySocketServer, replySocketPlace, type DirectSlot } from "../queue/reply-sockets.js";
import { directJobsEnabled, jobLine } from "../queue/direct-jobs.js";
import { RequestCounter } from "./request-counter.js";
import { StreamReader, type StreamReaderOptions } from "./stream-reader.js";

/**
 * Requests that arrive together go into one batch job when the deployment's
 * handler answers within this many ms on average: a batch costs Redis one job
 * instead of one per request, and with handlers this fast a batch never holds
 * requests back for long. Slower deployments get one job per request.
 */
export const BATCH_BELOW_MS = 5;
/** The most requests one batch job carries. */
export const MAX_BATCH = 64;
/** At least one request per deployment this often goes through the queue, not handed over (see mayHandOver). */
const QUEUED_EVERY_MS = 1_000;
/**
 * A requester with more requests than this waiting hands none over, until
 * fewer than HAND_OVER_AGAIN_BELOW wait: they go through the queue, where
 * those that arrive together are added as batch jobs, which costs Redis less
 * per request than one add-and-take each.
 */
const HAND_OVER_MAX_PENDING = 8;
const HAND_OVER_AGAIN_BELOW = 3;

export interface RequestClientOptions {
  redisUrl: string;
  namespace: string;
  /** Shown in reply-list keys and logs. @default "client-<uuid>" */
  id?: string;
  /**
   * Take answers over a reply socket (see queue/reply-sockets.ts) as well as the reply list.
   * @default true, unless Redis is reached over TLS or FLOTILLA_REPLY_SOCKETS=off
   */
  replySocket?: boolean;
}

export interface SubmitOptions {
  /** Reject with TIMEOUT after this long. @default 60000 */
  timeoutMs?: number;
  /** Refuse with BACKPRESSURE when this many requests already wait. @default unlimited */
  maxQueued?: number;
  /** The caller went away: the request is withdrawn if no replica took it, else its handler's signal fires. Rejects with the signal's reason. */
  signal?: AbortSignal;
  /**
   * Called at once with a function that does what aborting `signal` does, rejecting with the reason given;
   * after the answer it does nothing. Cheaper than a signal for callers (the router) that cancel rarely.
   */
  cancelWith?: (cancel: (reason: Error) => void) => void;
}

export interface OpenStreamOptions {
  /** Rejects with TIMEOUT when no chunk comes for this long. @default 60000 */
  idleTimeoutMs?: number;
  onEnd?: StreamReaderOptions["onEnd"];
}

interface Pending {
  deployment: string;
  resolve(reply: Reply): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
  /** The job carrying the request, once added (a batch job carries several). */
  jobId?: string;
}

/** The job with its reply address, built field by field (a spread of the caller's job costs more per request). */
function addressed(job: RequestJob, replyTo: string, requestId: string): RequestJob {
  const sent: RequestJob = job.kind === "http" ? { kind: "http", http: job.http, replyTo, requestId } : { kind: "call", payload: job.payload, replyTo, requestId };
  if (job.asyncId !== undefined) sent.asyncId = job.asyncId;
  return sent;
}

export class RequestClient {
  readonly id: string;
  private readonly keys: Keys;
  /** Commands fail fast while Redis is down so callers can answer 503 at once. */
  private readonly redis: Redis;
  /** Dedicated to the blocking reply reads. */
  private readonly replyReader: Redis;
  /** The deployments' queues, shared with a router's async requests. */
  readonly queues: DeploymentQueues;
  private readonly pending = new Map<string, Pending>();
  /** Batch jobs: requests still pending in each. The last to time out withdraws the job. */
  private readonly batchShares = new Map<string, number>();
  private readonly replyKey: string;
  private nextRequest = 0;
  /** Per deployment: moving average of the handler's time (ms), from the replies' `ms`. */
  private readonly serviceMs = new Map<string, number>();
  /** Deployments whose requests come with maxQueued: one job each, so the wait list counts requests exactly. */
  private readonly unbatched = new Set<string>();
  /** Requests for one deployment that arrive together are added in one round trip, one add in flight at a time: those that arrive during it go in the next (see Batcher). */
  private readonly adds = new Batcher<string, RequestJob, string | undefined>((deployment, jobs) => this.addJobs(deployment, jobs), 512, true);
  /** The requests waited on per deployment, written to Redis for the autoscaler. */
  private readonly demand: DemandReporter;
  /** The requests queued per deployment, written to Redis for the rates people see. */
  readonly counter: RequestCounter;
  private closed = false;
  private everReady = false;
  /** The reply reader's last run. */
  private readerLoop: Promise<void> | undefined;
  /** Whether the reply reader runs (it stops when no request is pending); set and cleared synchronously. */
  private reading = false;
  /** Connections for reading streamed answers. */
  private readonly streamConnections: BlockingPool;
  /** Where replicas send answers directly, when on. */
  private readonly replySocket: ReplySocketServer | undefined;
  private readonly socketStarted: Promise<void> | undefined;
  /** Answers taken, by the way they came: over the reply socket or from the reply list. */
  readonly repliesBy = { socket: 0, list: 0 };
  /** Requests handed to a replica directly (see direct-jobs.ts), by request id, with the slot each holds until its answer. */
  private readonly direct = new Map<string, DirectSlot>();
  /** Too many requests wait to hand any over (see HAND_OVER_MAX_PENDING). */
  private crowded = false;
  /** Requests handed to a replica directly so far. */
  directJobs = 0;
  private readonly handsOver = directJobsEnabled();
  /** Per deployment: when a request last went through the queue although a slot may have been free (see mayHandOver). */
  private readonly lastQueued = new Map<string, number>();

  constructor(options: RequestClientOptions) {
    // Replicas answer only a reply list whose requester id has no ':' (see ReplyLists.accepts).
    if (options.id !== undefined && !/^[^:\s{}]{1,128}$/.test(options.id)) throw new FlotillaError("INVALID_SPEC", `request client id '${options.id}': 1-128 characters, none of ':', '{', '}' or spaces`);
    this.id = options.id ?? `client-${uuidv4()}`;
    this.keys = new Keys(options.namespace);
    this.redis = createRedis(options.redisUrl, { mode: "failFast", name: `flotilla-${this.id}` });
    // Fails fast like `redis`: a request's add may go on it (see addAndRead).
    this.replyReader = createRedis(options.redisUrl, { mode: "failFast", name: `flotilla-${this.id}-replies` });
    this.replyKey = this.keys.replies(this.id);
    this.streamConnections = new BlockingPool(options.redisUrl, `flotilla-${this.id}`);
    this.redis.once("ready", () => (this.everReady = true));
    this.demand = new DemandReporter(this.redis, this.keys, this.id);
    this.counter = new RequestCounter(this.redis, this.keys);
    this.queues = new DeploymentQueues(this.redis, this.keys.namespace);
    const place = options.replySocket === false ? undefined : replySocketPlace(options.redisUrl);
    if (place) {
      const server = new ReplySocketServer(this.redis, this.replyKey, place, (raw) => {
        this.repliesBy.socket++;
        this.deliver(raw);
      });
      this.replySocket = server;
      // Without it, answers come on the list as before. start() registers once; each reconnect after it, again.
      this.socketStarted = server.start().then(
        () => void this.redis.on("ready", () => void server.renew()),
        () => undefined,
      );
    }
  }

  /** Resolves once the reply socket (if any) listens and Redis answered its first registration (or could not be reached). */
  async socketReady(): Promise<void> {
    await this.socketStarted;
  }

  /** The reply socket's port, when it listens. */
  get replySocketPort(): number | undefined {
    return this.replySocket?.port;
  }

  get inflight(): number {
    return this.pending.size;
  }

  /** The connection requests are added on (for health checks). */
  get connection(): Redis {
    return this.redis;
  }

  private queue(deployment: string) {
    return this.queues.get(deployment);
  }

  /** Enqueues one request and resolves with its reply. */
  async submit(deployment: string, job: RequestJob, options: SubmitOptions = {}): Promise<Reply> {
    if (this.closed) throw new FlotillaError("INTERNAL", "the request client is closed");
    if (this.redis.status !== "ready") await this.whenConnected();
    if (options.maxQueued === undefined) this.unbatched.delete(deployment);
    else {
      this.unbatched.add(deployment);
      const waiting = await this.queue(deployment).waiting();
      if (waiting >= options.maxQueued) {
        throw new FlotillaError("BACKPRESSURE", `deployment '${deployment}' has ${waiting} requests waiting (maxQueuedRequests ${options.maxQueued})`);
      }
    }
    const requestId = String(this.nextRequest++);
    const timeoutMs = options.timeoutMs ?? 60_000;
    let timedOut = false;
    const answer = new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        timedOut = true;
        this.settle(requestId, true);
        reject(new FlotillaError("TIMEOUT", `no answer from deployment '${deployment}' within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(requestId, { deployment, resolve, reject, timer });
      this.demand.change(deployment, 1);
    });
    // The caller holds `answer` only once the add is done: a timeout or cancel before that is not an unhandled rejection.
    answer.catch(() => undefined);
    const cancel = (reason: Error): void => {
      const entry = this.pending.get(requestId);
      if (!entry) return;
      timedOut = true;
      this.settle(requestId, true);
      entry.reject(reason);
      void publishCancel(this.redis, this.keys, deployment, this.replyKey, requestId).catch(() => undefined);
    };
    options.cancelWith?.(cancel);
    if (options.signal) {
      const signal = options.signal;
      const onAbort = (): void => cancel(signal.reason);
      if (signal.aborted) queueMicrotask(onAbort);
      else {
        signal.addEventListener("abort", onAbort, { once: true });
        void answer.then(
          () => signal.removeEventListener("abort", onAbort),
          () => signal.removeEventListener("abort", onAbort),
        );
      }
    }
    let jobId: string | undefined;
    try {
      const slot = this.mayHandOver(deployment) ? this.replySocket?.claim(deployment) : undefined;
      const sent = addressed(job, this.replyKey, requestId);
      const added = (slot && this.handOver(deployment, sent, requestId, slot)) || this.adds.add(deployment, sent, this.pending.size === 1);
      // Normally started by the add (addJobs); here when the add waits for company or for the queue's set-up.
      this.ensureReader();
      jobId = await added;
    } catch (err) {
      this.settle(requestId);
      throw new FlotillaError("REDIS_UNAVAILABLE", `could not enqueue the request: ${errorMessage(err)}`, { cause: err });
    }
    this.counter.add(deployment);
    // Timed out before its job was even added: withdraw the job unless pending requests share it.
    if (timedOut && jobId !== undefined && !this.batchShares.has(jobId)) void this.withdraw(deployment, jobId);
    return answer;
  }

  /** The chunks of a streamed answer, given its head (a reply with `stream`); read once. */
  openStream(deployment: string, head: Reply, options: OpenStreamOptions = {}): StreamReader {
    if (!head.stream || head.requestId === undefined) throw new FlotillaError("INTERNAL", "openStream needs the head of a streamed answer");
    return new StreamReader({
      deployment,
      channel: new StreamReaderChannel(this.keys, { replyTo: this.replyKey, requestId: head.requestId, writer: head.stream.writer }),
      control: this.redis,
      acquire: () => this.streamConnections.acquire(),
      release: (conn) => this.streamConnections.release(conn),
      idleTimeoutMs: options.idleTimeoutMs ?? 60_000,
      ...(options.onEnd ? { onEnd: options.onEnd } : {}),
    });
  }

  /**
   * A first connection still being set up is waited for briefly, also while
   * it retries (a Redis Cluster client starts over when its first slot map
   * or ready check fails, as on a cluster that was just created); a
   * connection that was ready and was lost (Redis down) fails at once so
   * callers can answer 503.
   */
  private async whenConnected(): Promise<void> {
    const status = this.redis.status;
    if (!this.everReady && status !== "end") {
      await waitReady(this.redis, 2000).catch(() => undefined);
    }
    if (this.redis.status !== "ready") {
      throw new FlotillaError("REDIS_UNAVAILABLE", `Redis is not reachable (connection ${this.redis.status}); the request was not accepted`);
    }
  }

  /**
   * Adds the requests of one turn: one job each, in one round trip; or, for a
   * fast deployment, batch jobs. Notes each pending request's job, so that a
   * request that times out can withdraw it; resolves with each one's job id.
   */
  private async addJobs(deployment: string, jobs: RequestJob[]): Promise<Array<string | undefined>> {
    const queue = this.queue(deployment);
    if (jobs.length > 1 && !this.unbatched.has(deployment) && (this.serviceMs.get(deployment) ?? Infinity) < BATCH_BELOW_MS) {
      const data: BatchJob[] = [];
      for (let i = 0; i < jobs.length; i += MAX_BATCH) data.push({ kind: "batch", requests: jobs.slice(i, i + MAX_BATCH) });
      const ids = await this.addAndRead((via) => queue.addBatches(data, via));
      data.forEach((batch, b) => {
        const id = ids[b];
        const shares = id === undefined ? 0 : batch.requests.filter((r) => this.attach(r.requestId, id)).length;
        if (id !== undefined && shares > 0) this.batchShares.set(id, shares);
      });
      return jobs.map((_, i) => ids[Math.floor(i / MAX_BATCH)]);
    }
    const ids = await this.addAndRead((via) => queue.addRequests(jobs, via));
    jobs.forEach((job, i) => this.attach(job.requestId, ids[i]));
    return ids;
  }

  /**
   * Sends an add and makes sure replies are read. When the reply connection
   * is idle (no request was pending), the add goes on it, followed in the
   * same write by the BLMPOP that waits for the answer: one write and one
   * read in Redis instead of two each. Redis runs a connection's commands in
   * order, so the add runs before the pop blocks. Otherwise the add goes on
   * the request connection, beside the pop already waiting.
   */
  private addAndRead<T>(add: (via?: Redis) => Promise<T>): Promise<T> {
    if (this.reading || this.closed || this.replyReader.status !== "ready") {
      const added = add();
      this.ensureReader();
      return added;
    }
    const stream = (this.replyReader as unknown as { stream?: { cork?(): void; uncork?(): void } }).stream;
    const corked = typeof stream?.cork === "function" && typeof stream.uncork === "function";
    if (corked) stream.cork?.();
    try {
      const added = add(this.replyReader);
      this.ensureReader();
      return added;
    } finally {
      if (corked) stream.uncork?.();
    }
  }

  /**
   * Whether a request for `deployment` may be handed to a replica directly.
   * One a second goes through the queue instead: a replica offers slots only
   * to a requester it has answered, and Redis hands a queued job to the
   * replica that has waited longest, so a replica that has not yet answered
   * this requester (one just started) gets a request, and then offers too.
   * None under load (see HAND_OVER_MAX_PENDING).
   */
  private mayHandOver(deployment: string): boolean {
    if (!this.handsOver) return false;
    const waiting = this.pending.size;
    if (this.crowded ? waiting >= HAND_OVER_AGAIN_BELOW : waiting > HAND_OVER_MAX_PENDING) {
      this.crowded = true;
      return false;
    }
    this.crowded = false;
    const now = Date.now();
    const last = this.lastQueued.get(deployment);
    if (last !== undefined && now - last < QUEUED_EVERY_MS) return true;
    this.lastQueued.set(deployment, now);
    return false;
  }

  /**
   * Adds the request's job and takes it for a replica that offered `slot`
   * (ADD_TAKE), then writes the job to that replica, which runs it; resolves
   * with the job's id. When something waits before it in the queue, the job
   * waits there too, for any replica. Undefined when the queue cannot do
   * that yet: the caller adds the job the usual way.
   */
  private handOver(deployment: string, job: RequestJob, requestId: string, slot: DirectSlot): Promise<string> | undefined {
    const queue = this.queue(deployment);
    if (!queue.takesOnAdd) {
      slot.release();
      return undefined;
    }
    return this.addAndRead((via) => queue.addTaken(job, slot.token, slot.lockMs, via)).then(
      async (added) => {
        this.attach(requestId, added.id);
        if (!added.taken) {
          slot.release();
          return added.id;
        }
        // Answered already (timed out, cancelled): nobody runs it for nobody; the caller withdraws it.
        if (this.pending.has(requestId) && slot.send(jobLine(added.id, slot.token, added.timestamp, added.options, added.data))) {
          this.direct.set(requestId, slot);
          this.directJobs++;
          return added.id;
        }
        slot.release();
        await queue.giveBack(added.id, slot.token).catch(() => undefined);
        return added.id;
      },
      (err: unknown) => {
        slot.release();
        throw err;
      },
    );
  }

  /** Notes the job of a request still pending; false if it was already answered or failed. */
  private attach(requestId: string | undefined, jobId: string | undefined): boolean {
    const entry = requestId === undefined ? undefined : this.pending.get(requestId);
    if (!entry || jobId === undefined) return false;
    entry.jobId = jobId;
    return true;
  }

  /**
   * A timed-out request's job, when no other pending request shares it, is removed entirely if no replica
   * has taken it, so nobody runs it for nobody and nothing of it stays in Redis.
   */
  private async withdraw(deployment: string, jobId: string): Promise<void> {
    try {
      await this.queue(deployment).remove(jobId);
    } catch {
      // Best effort: if it runs later, its reply expires unread.
    }
  }

  /** Starts the reply reader unless it runs; its first BLMPOP is sent in this turn. */
  private ensureReader(): void {
    if (this.reading || this.closed) return;
    this.reading = true;
    this.readerLoop = this.readReplies();
  }

  /**
   * Reads replies while requests are pending; the next request starts it
   * again (see addAndRead). `reading` is cleared in the same turn as the
   * last check of `pending`, so a request added after it starts a reader.
   */
  private async readReplies(): Promise<void> {
    try {
      while (!this.closed && this.pending.size > 0) {
        try {
          const res = (await this.replyReader.call("BLMPOP", "1", "1", this.replyKey, "LEFT", "COUNT", "512")) as [string, string[]] | null;
          if (!res) continue;
          this.repliesBy.list += res[1].length;
          for (const raw of res[1]) this.deliver(raw);
          if (this.pending.size === 0) break;
          // Let the requests just answered write their responses before the next BLMPOP's write.
          await new Promise((resolve) => setImmediate(resolve));
        } catch {
          if (this.closed) break;
          // Redis away: wait for the connection (failing fast meanwhile); a command error: a pause, not a busy loop.
          if (this.replyReader.status !== "ready") await waitReady(this.replyReader, 2000).catch(() => undefined);
          else await new Promise((r) => setTimeout(r, 200));
        }
      }
    } finally {
      this.reading = false;
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
    const slot = this.direct.get(id);
    if (slot) {
      this.direct.delete(id);
      slot.release();
    }
    const entry = this.pending.get(id);
    if (!entry) return; // timed out already, or a duplicate answer after a retry
    if (reply.ms !== undefined) {
      const avg = this.serviceMs.get(entry.deployment);
      this.serviceMs.set(entry.deployment, avg === undefined ? reply.ms : avg * 0.7 + reply.ms * 0.3);
    }
    this.settle(id);
    entry.resolve(reply);
  }

  /** Forgets a request that was answered, failed or (`timedOut`) timed out; the last to time out on a job withdraws it. */
  private settle(id: string, timedOut = false): void {
    const entry = this.pending.get(id);
    if (!entry) return;
    clearTimeout(entry.timer);
    this.pending.delete(id);
    this.demand.change(entry.deployment, -1);
    const { jobId } = entry;
    if (jobId === undefined) return;
    const left = (this.batchShares.get(jobId) ?? 1) - 1;
    if (left > 0) this.batchShares.set(jobId, left);
    else {
      this.batchShares.delete(jobId);
      if (timedOut) void this.withdraw(entry.deployment, jobId);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const [id, entry] of this.pending) {
      this.settle(id);
      entry.reject(new FlotillaError("INTERNAL", "the request client closed before the answer came"));
    }
    await this.demand.stop();
    await this.counter.close();
    await this.queues.close();
    await this.replySocket?.close();
    this.replyReader.disconnect();
    this.streamConnections.close();
    await this.readerLoop?.catch(() => undefined);
    await closeRedis(this.redis);
  }
}
