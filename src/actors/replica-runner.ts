/**
 * The effects behind the replica machine, inside a replica process: load the
 * handler, consume the deployment's queue with a BullMQ worker, answer each
 * request on its requester's reply list, drain on request.
 */
import type { Job } from "bullmq";
import { setMaxListeners } from "node:events";
import { tuneIdleWorker, Worker } from "../shared/bullmq-classes.js";
import type { Redis } from "ioredis";
import { createActor, fromPromise, type Actor } from "xstate";
import { errorMessage } from "../errors.js";
import type { Logger } from "../shared/logger.js";
import type { ReplicaReport } from "./replica-ipc.js";
import { encodeResult, type HttpRequestData, type QueueJob, type Reply, type RequestJob } from "../shared/protocol.js";
import { Semaphore } from "../shared/semaphore.js";
import { Keys } from "../shared/keys.js";
import { Batcher } from "../shared/batcher.js";
import { createRedis } from "../shared/redis.js";
import { loadHandler, type LoadedHandler, type PrepareLoader } from "./handler-loader.js";
import { replicaMachine, type ReplicaMachineState } from "./replica-machine.js";
import { workerOptions, type ReplicaConfig, type ReplicaSettings } from "./replica-config.js";

/** How long a reply list lives without its reader: a dead requester's replies expire. */
const REPLY_TTL_MS = 120_000;

/**
 * Lua: appends replies to a reply list and renews its TTL, as one command.
 * (An ioredis pipeline would be one write too, but building one on a
 * connection that carries BullMQ's scripts copies all of them each time.)
 * KEYS[1] = reply list; ARGV[1] = TTL in ms; ARGV[2..] = replies.
 */
const PUSH_REPLIES = `
local n = redis.call("RPUSH", KEYS[1], unpack(ARGV, 2))
redis.call("PEXPIRE", KEYS[1], ARGV[1])
return n
`;

export interface HttpRequest extends HttpRequestData {
  json<T = unknown>(): T;
  signal: AbortSignal;
}

export class ReplicaRunner {
  readonly actor: Actor<typeof replicaMachine>;
  private handler: LoadedHandler | undefined;
  private worker: Worker | undefined;
  private readonly redis: Redis;
  private readonly keys: Keys;
  private inflight = 0;
  private readonly controllers = new Set<AbortController>();
  /** maxConcurrentQueries counts requests, also when several arrive in one batch job. */
  private readonly slots: Semaphore;
  /** Replies finished in the same turn go to Redis together: one command per reply list. */
  private readonly replies = new Batcher<string, string, void>((key, values) => this.pushReplies(key, values));

  private readonly config: ReplicaConfig;
  /** Runs once the handler is constructed and configured, before the worker takes jobs; a rejection fails the start. */
  readiness: ((handler: LoadedHandler) => Promise<void>) | undefined;

  constructor(
    config: ReplicaConfig,
    private readonly log: Logger,
    /** Readies the module loader the handler needs before it loads (tsx's hooks, in a replica process). */
    private readonly prepareLoader?: PrepareLoader,
  ) {
    this.config = { ...config };
    this.slots = new Semaphore(config.maxConcurrentQueries);
    this.keys = new Keys(config.namespace);
    this.redis = createRedis(config.redisUrl, { name: `flotilla-replica-${config.replicaId}` });
    const machine = replicaMachine.provide({
      actors: {
        start: fromPromise(() => this.start()),
        reconfigure: fromPromise(({ input }: { input: { userConfig: unknown; configVersion: string } }) => this.reconfigure(input.userConfig)),
        drain: fromPromise(() => this.drain()),
      },
    });
    this.actor = createActor(machine, {
      input: { gracefulShutdownTimeoutMs: config.gracefulShutdownTimeoutS * 1000, configVersion: config.configVersion },
    });
  }

  get inflightCount(): number {
    return this.inflight;
  }

  report(): ReplicaReport {
    const snapshot = this.actor.getSnapshot();
    return {
      state: snapshot.value as ReplicaMachineState,
      configVersion: snapshot.context.configVersion,
      error: snapshot.context.error,
      workerId: this.worker?.id ?? null,
      inflight: this.inflight,
    };
  }

  private async start(): Promise<void> {
    const t0 = performance.now();
    this.handler = await loadHandler(this.config.appDir, this.config.importRef, this.prepareLoader);
    if (this.config.userConfig !== undefined && this.handler.reconfigure) {
      await this.handler.reconfigure(structuredClone(this.config.userConfig));
    }
    await this.readiness?.(this.handler);
    const worker = new Worker(this.keys.queueName(this.config.deployment), (job, _token, signal) => this.process(job, signal), {
      ...workerOptions(this.config),
      connection: this.redis,
      prefix: this.keys.queuePrefix,
    });
    const { deployment } = this.config;
    tuneIdleWorker(worker, () => this.inflight === 0, {
      marker: this.keys.queueKey(deployment, "marker"),
      wait: this.keys.queueKey(deployment, "wait"),
      prioritized: this.keys.queueKey(deployment, "prioritized"),
      delayed: this.keys.queueKey(deployment, "delayed"),
    });
    worker.on("error", (err) => this.warnThrottled(errorMessage(err)));
    this.worker = worker;
    await worker.waitUntilReady();
    this.log.info({ ms: Math.round(performance.now() - t0), kind: this.handler.kind }, "replica running");
  }

  /** New concurrency, timeouts and retry budget, applied to the running worker. */
  applySettings(settings: ReplicaSettings): void {
    Object.assign(this.config, settings);
    if (settings.requestTimeoutS === undefined) delete this.config.requestTimeoutS;
    if (this.worker) {
      this.worker.concurrency = settings.maxConcurrentQueries;
      this.slots.setLimit(settings.maxConcurrentQueries);
      this.worker.opts.maxStalledCount = settings.maxRetries;
    }
    this.actor.send({ type: "SETTINGS", gracefulShutdownTimeoutMs: settings.gracefulShutdownTimeoutS * 1000 });
    this.log.info(settings, "settings applied");
  }

  private lastWarnAt = 0;
  private suppressed = 0;

  /** Worker errors repeat every second during a Redis outage: log one, then at most one per 10 s with a count. */
  private warnThrottled(message: string): void {
    const now = Date.now();
    if (now - this.lastWarnAt < 10_000) {
      this.suppressed++;
      return;
    }
    this.log.warn({ err: message, ...(this.suppressed > 0 ? { suppressed: this.suppressed } : {}) }, "worker error");
    this.lastWarnAt = now;
    this.suppressed = 0;
  }

  private async reconfigure(userConfig: unknown): Promise<void> {
    if (this.handler?.reconfigure) await this.handler.reconfigure(structuredClone(userConfig));
    this.log.info("reconfigured");
  }

  private async drain(): Promise<void> {
    // close() stops taking jobs and resolves once in-flight ones have finished.
    await this.worker?.close();
  }

  /** After the graceful timeout: abort what still runs; its jobs are retried elsewhere once their locks go. */
  async forceStop(): Promise<void> {
    for (const c of this.controllers) c.abort(new Error("replica stopped"));
    await this.worker?.close(true).catch(() => undefined);
  }

  async closeConnections(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }

  /**
   * The job's return value: the whole reply for a job without a reply list (a
   * client that reads return values), just the status otherwise, so BullMQ's
   * completion event does not copy every response body into its stream.
   */
  private async process(job: Job, jobSignal: AbortSignal | undefined): Promise<Reply | { status: number; batch?: number }> {
    const data = job.data as QueueJob;
    if (data.kind === "batch") {
      // Each request of the batch listens for the job's abort: more listeners than an AbortSignal's default warning limit.
      if (jobSignal) setMaxListeners(data.requests.length + 10, jobSignal);
      await Promise.all(data.requests.map((r) => this.serve(r, jobSignal)));
      return { status: 200, batch: data.requests.length };
    }
    return this.serve(data, jobSignal);
  }

  private async serve(data: RequestJob, jobSignal: AbortSignal | undefined): Promise<Reply | { status: number }> {
    const handler = this.handler;
    await this.slots.acquire();
    this.inflight++;
    const started = performance.now();
    const abort = new AbortController();
    this.controllers.add(abort);
    const onJobAbort = (): void => abort.abort(jobSignal?.reason);
    jobSignal?.addEventListener("abort", onJobAbort, { once: true });
    let timer: NodeJS.Timeout | undefined;
    try {
      let reply: Reply;
      try {
        if (!handler) throw new Error("handler not loaded");
        const arg = data.kind === "http" ? this.httpRequest(data.http, abort.signal) : data.payload;
        const call = Promise.resolve(handler.call(arg, { signal: abort.signal }));
        const timeoutS = this.config.requestTimeoutS;
        const result = timeoutS
          ? await Promise.race([
              call,
              new Promise<never>((_, reject) => {
                timer = setTimeout(() => {
                  const err = new RequestTimeout(timeoutS);
                  abort.abort(err);
                  reject(err);
                }, timeoutS * 1000);
              }),
            ])
          : await call;
        reply = data.kind === "http" ? { ...encodeResult(result), ...this.origin(data) } : { status: 200, headers: {}, body: "", value: result ?? null, ...this.origin(data) };
      } catch (err) {
        reply = this.errorReply(data, err);
      }
      reply.ms = Math.round((performance.now() - started) * 1000) / 1000;
      // The reply is in Redis before the job completes: a crash in between retries the request, never loses it.
      if (data.replyTo) {
        await this.sendReply(data.replyTo, reply);
        return { status: reply.status };
      }
      return reply;
    } finally {
      if (timer) clearTimeout(timer);
      jobSignal?.removeEventListener("abort", onJobAbort);
      this.controllers.delete(abort);
      this.inflight--;
      this.slots.release();
    }
  }

  private origin(data: RequestJob): { replica: string; version: string; requestId?: string } {
    return { replica: this.config.replicaId, version: this.config.version, ...(data.requestId !== undefined ? { requestId: data.requestId } : {}) };
  }

  private errorReply(data: RequestJob, err: unknown): Reply {
    const timeout = err instanceof RequestTimeout;
    const code = timeout ? "TIMEOUT" : "HANDLER_ERROR";
    const message = errorMessage(err);
    if (!timeout) this.log.warn({ err: message, job: data.requestId }, "handler threw");
    const error = { code, message };
    return {
      status: timeout ? 504 : 500,
      headers: { "content-type": "application/json; charset=utf-8" },
      body: JSON.stringify({ error }),
      error,
      ...this.origin(data),
    };
  }

  private async sendReply(replyTo: string, reply: Reply): Promise<void> {
    if (!replyTo.startsWith(this.keys.repliesPrefix)) {
      this.log.warn({ replyTo }, "refusing to reply to a key outside this namespace's reply lists");
      return;
    }
    await this.replies.add(replyTo, JSON.stringify(reply), this.inflight === 1);
  }

  private async pushReplies(key: string, values: string[]): Promise<void[]> {
    await this.redis.eval(PUSH_REPLIES, 1, key, REPLY_TTL_MS, ...values);
    return values.map(() => undefined);
  }

  private httpRequest(http: HttpRequestData, signal: AbortSignal): HttpRequest {
    return {
      ...http,
      signal,
      json<T>(): T {
        return (http.body === "" ? null : JSON.parse(http.body)) as T;
      },
    };
  }
}

class RequestTimeout extends Error {
  constructor(seconds: number) {
    super(`the handler did not finish within requestTimeoutS (${seconds} s)`);
  }
}
