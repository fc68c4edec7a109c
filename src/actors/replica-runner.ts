/**
 * The effects behind the replica machine, inside a replica process: load the
 * handler, consume the deployment's queue, check each job's data, answer each
 * request on its requester's reply list, drain on request.
 */
import type { Redis } from "ioredis";
import { createActor, fromPromise, type Actor } from "xstate";
import { ERROR_CODES, errorMessage, FlotillaError } from "../errors.js";
import type { Logger } from "../shared/logger.js";
import type { ReplicaReport } from "./replica-ipc.js";
import { encodeResult, type HttpRequestData, type Reply, type RequestJob } from "../shared/protocol.js";
import { CancelSubscriber } from "./cancel-subscriber.js";
import { CancelWatch } from "./cancel-watch.js";
import { streamResult, streams } from "./stream-result.js";
import { RequestAbort, type Abortable } from "./request-abort.js";
import { ReplyGroup } from "./reply-group.js";
import { StreamStopped } from "./stream-stopped.js";
import type { JobDataProblem } from "../shared/job-data.js";
import { errorReply, replyOrigin, withOrigin, type ReplyOrigin } from "../shared/reply.js";
import { Semaphore } from "../shared/semaphore.js";
import { Keys } from "../shared/keys.js";
import { Batcher } from "../shared/batcher.js";
import { createRedis } from "../shared/redis.js";
import { Answered, DeploymentWorker } from "../queue/deployment-worker.js";
import { ReplyLists } from "../queue/reply-lists.js";
import { ReplySockets, replySocketsEnabled } from "../queue/reply-sockets.js";
import { AsyncJobs, type AsyncRun } from "./async-jobs.js";
import { queueJobShape, requestShape } from "./job-shape.js";
import { loadHandler, type LoadedHandler, type PrepareLoader, type RequestContext } from "./handler-loader.js";
import { replicaMachine, type ReplicaMachineState } from "./replica-machine.js";
import type { ReplicaConfig, ReplicaSettings } from "./replica-config.js";

type JobDataModule = typeof import("../shared/job-data.js");
let loadingJobData: Promise<JobDataModule> | undefined;

/**
 * The job schema, loaded on the first job that is not of the shape requesters
 * send (job-shape.ts): zod costs a replica's start-up about as much as the
 * rest of the runtime together, and a good part of its memory.
 */
function loadJobSchema(): Promise<JobDataModule> {
  return (loadingJobData ??= import("../shared/job-data.js"));
}

export interface HttpRequest extends HttpRequestData {
  json<T = unknown>(): T;
  signal: AbortSignal;
}

export class ReplicaRunner {
  readonly actor: Actor<typeof replicaMachine>;
  private handler: LoadedHandler | undefined;
  private worker: DeploymentWorker | undefined;
  private readonly redis: Redis;
  private readonly keys: Keys;
  private readonly replyLists: ReplyLists;
  /** Connections to requesters that take answers over a socket (see reply-sockets.ts). */
  private readonly replySockets: ReplySockets | undefined;
  /** One connection for every cancel channel, opened when a request first runs long enough to need it. */
  private readonly subscriber: CancelSubscriber;
  private readonly cancels: CancelWatch;
  private streamsStarted = 0;
  private readonly asyncJobs: AsyncJobs;
  private inflight = 0;
  private readonly controllers = new Set<Abortable>();
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
    this.replySockets = replySocketsEnabled() ? new ReplySockets(this.redis, log) : undefined;
    this.replyLists = new ReplyLists(this.redis, this.keys, this.replySockets);
    this.subscriber = new CancelSubscriber(config.redisUrl, `flotilla-replica-${config.replicaId}-cancels`);
    this.cancels = new CancelWatch(this.subscriber, this.redis, this.keys, config.deployment);
    this.asyncJobs = new AsyncJobs(this.redis, this.subscriber, this.keys, config.deployment, log);
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
    const worker = new DeploymentWorker({
      connection: this.redis,
      namespace: this.config.namespace,
      deployment: this.config.deployment,
      concurrency: this.config.maxConcurrentQueries,
      maxRetries: this.config.maxRetries,
      process: (data) => this.process(data),
      isIdle: () => this.inflight === 0,
      ...(this.replySockets ? { replySockets: this.replySockets } : {}),
      log: this.log,
    });
    worker.onError((err) => this.warnThrottled("worker error", errorMessage(err)));
    this.worker = worker;
    await worker.ready();
    this.log.info({ ms: Math.round(performance.now() - t0), kind: this.handler.kind }, "replica running");
  }

  /** New concurrency, timeouts and retry budget, applied to the running worker. */
  applySettings(settings: ReplicaSettings): void {
    Object.assign(this.config, settings);
    if (settings.requestTimeoutS === undefined) delete this.config.requestTimeoutS;
    if (settings.streamTimeoutS === undefined) delete this.config.streamTimeoutS;
    if (this.worker) {
      this.worker.apply({ concurrency: settings.maxConcurrentQueries, maxRetries: settings.maxRetries });
      this.slots.setLimit(settings.maxConcurrentQueries);
    }
    this.actor.send({ type: "SETTINGS", gracefulShutdownTimeoutMs: settings.gracefulShutdownTimeoutS * 1000 });
    this.log.info(settings, "settings applied");
  }

  private readonly lastWarnAt = new Map<string, { at: number; suppressed: number }>();

  /**
   * Worker errors repeat every second during a Redis outage, and a client may send malformed jobs by the
   * thousand: per kind of warning, log one, then at most one per 10 s with a count.
   */
  private warnThrottled(what: string, message: string): void {
    const now = Date.now();
    const last = this.lastWarnAt.get(what);
    if (last && now - last.at < 10_000) {
      last.suppressed++;
      return;
    }
    this.log.warn({ err: message, ...(last && last.suppressed > 0 ? { suppressed: last.suppressed } : {}) }, what);
    this.lastWarnAt.set(what, { at: now, suppressed: 0 });
  }

  private async reconfigure(userConfig: unknown): Promise<void> {
    if (this.handler?.reconfigure) await this.handler.reconfigure(structuredClone(userConfig));
    this.log.info("reconfigured");
  }

  private async drain(): Promise<void> {
    this.replySockets?.drain();
    // close() stops taking jobs and resolves once in-flight ones have finished.
    await this.worker?.close();
  }

  /** After the graceful timeout: abort what still runs; its jobs are retried elsewhere once their locks go. */
  async forceStop(): Promise<void> {
    for (const c of this.controllers) c.abort(new Error("replica stopped"));
    await this.worker?.close(true).catch(() => undefined);
  }

  async closeConnections(): Promise<void> {
    this.replySockets?.close();
    this.asyncJobs.close();
    await this.subscriber.close();
    await this.redis.quit().catch(() => this.redis.disconnect());
  }

  /**
   * The job's return value: the whole reply for a job without a reply list (a
   * client that reads return values), just the status otherwise, so BullMQ's
   * completion event does not copy every response body into its stream. Data
   * that does not match the job schema never reaches the handler: it is
   * answered 400 INVALID_REQUEST naming the field. In a batch, each request
   * is checked (and refused) on its own.
   */
  private async process(raw: unknown): Promise<Reply | { status: number; batch?: number } | Answered> {
    // The usual shape is checked without an await, which would delay the job's start by a turn.
    const shaped = queueJobShape(raw);
    const data = shaped ? ({ ok: true, value: shaped } as const) : (await loadJobSchema()).queueJobData(raw);
    if (!data.ok) return this.refuse(raw, data.problem);
    if (data.value.kind !== "batch") return this.serve(data.value, true);
    const { requests } = data.value;
    const first = requests[0] as { replyTo?: unknown } | undefined;
    const group = typeof first?.replyTo === "string" && this.replyLists.accepts(first.replyTo) ? new ReplyGroup(first.replyTo, (key, values) => this.replyLists.push(key, values)) : undefined;
    await Promise.all(
      requests.map(async (request, i) => {
        const value = requestShape(request);
        if (value) return this.serve(value, false, group);
        const checked = (await loadJobSchema()).requestJobData(request, `requests[${i}]`);
        return checked.ok ? this.serve(checked.value, false, group) : this.refuse(request, checked.problem);
      }),
    );
    const answered = { status: 200, batch: requests.length };
    if (!group) return answered;
    // Answered within the turn the job started: the replies go to Redis with the job's completion, in one script.
    const replies = group.take();
    if (replies.length > 0) return new Answered(answered, group.replyTo, replies);
    await group.sent;
    return answered;
  }

  /** Answers malformed request data with INVALID_REQUEST, on its reply list if it names one of this namespace. */
  private async refuse(raw: unknown, problem: JobDataProblem): Promise<Reply | { status: number }> {
    const { replyTo, requestId } = (await loadJobSchema()).replyAddress(raw);
    this.warnThrottled("malformed job refused", problem.message);
    const reply = errorReply("INVALID_REQUEST", `job data does not match the job format: ${problem.message}`, this.origin(requestId), { field: problem.field });
    if (replyTo !== undefined && this.replyLists.accepts(replyTo)) {
      await this.sendReply(replyTo, reply);
      return { status: reply.status };
    }
    return reply;
  }

  /**
   * `alone`: the request is its job's only one, so its reply can go to Redis
   * with the job's completion. `group`: its batch's replies, which go with
   * the batch's completion when they come soon enough.
   */
  private async serve(data: RequestJob, alone = false, group?: ReplyGroup): Promise<Reply | { status: number } | Answered> {
    const handler = this.handler;
    // A free slot is taken at once: an await here would start every request a turn late.
    if (!this.slots.tryAcquire()) await this.slots.acquire();
    this.inflight++;
    const started = performance.now();
    const abort = new RequestAbort();
    this.controllers.add(abort);
    const unwatch = data.replyTo !== undefined && data.requestId !== undefined ? this.cancels.watch(data.replyTo, data.requestId, abort) : undefined;
    let timer: NodeJS.Timeout | undefined;
    let run: AsyncRun | undefined;
    try {
      if (data.asyncId !== undefined) {
        run = await this.asyncJobs.begin(data.asyncId);
        if (!run) return { status: ERROR_CODES.CANCELLED.status };
        const cancelled = run.cancelled;
        if (cancelled.aborted) abort.abort(cancelled.reason);
        else cancelled.addEventListener("abort", () => abort.abort(cancelled.reason), { once: true });
      }
      let reply: Reply;
      try {
        if (!handler) throw new Error("handler not loaded");
        const arg = data.kind === "http" ? new HandlerRequest(data.http, abort) : data.payload;
        const progress = run ? run.progress : noProgress;
        const out: unknown = handler.call(arg, new HandlerContext(abort, progress));
        const timeoutS = this.config.requestTimeoutS;
        // A handler that answered synchronously is not awaited: an await would only start its reply a turn late.
        const result = !isThenable(out)
          ? out
          : timeoutS
            ? await Promise.race([
                out,
                new Promise<never>((_, reject) => {
                  timer = setTimeout(() => {
                    const err = new RequestTimeout(timeoutS);
                    abort.abort(err);
                    reject(err);
                  }, timeoutS * 1000);
                }),
              ])
            : await out;
        if (timer) clearTimeout(timer);
        const streamed = streams(result) ? await this.stream(data, result, abort, started) : undefined;
        // Nothing to abort once the handler (and its stream) finished: writing the reply is not watched.
        unwatch?.();
        if (streamed && "status" in streamed) return streamed;
        const value = streamed ? streamed.gathered : result;
        const origin = this.origin(data.requestId);
        reply = withOrigin(data.kind === "http" ? encodeResult(value) : { status: 200, headers: {}, body: "", value: value ?? null }, origin);
      } catch (err) {
        reply = this.errorReply(data, err);
      }
      reply.ms = Math.round((performance.now() - started) * 1000) / 1000;
      // The reply is in Redis no later than the job completes (in the same script for a job of its own): a crash in between retries the request, never loses it.
      if (data.asyncId !== undefined) await this.asyncJobs.end(data.asyncId, reply);
      if (data.replyTo) {
        if (alone && this.replyLists.accepts(data.replyTo)) return new Answered({ status: reply.status }, data.replyTo, [JSON.stringify(reply)]);
        if (group?.add(data.replyTo, JSON.stringify(reply))) return { status: reply.status };
        await this.sendReply(data.replyTo, reply);
        return { status: reply.status };
      }
      return reply;
    } finally {
      if (timer) clearTimeout(timer);
      unwatch?.();
      this.controllers.delete(abort);
      this.inflight--;
      this.slots.release();
    }
  }

  /** A result that streams, streamed or gathered (stream-result.ts); undefined for any other. */
  private stream(data: RequestJob, result: unknown, abort: Abortable, started: number): ReturnType<typeof streamResult> {
    const { requestTimeoutS, streamTimeoutS } = this.config;
    const deps = {
      redis: this.redis,
      keys: this.keys,
      log: this.log,
      accepts: (key: string) => this.replyLists.accepts(key),
      nextWriter: () => `${this.config.replicaId}.${this.streamsStarted++}`,
      origin: (requestId: string) => this.origin(requestId),
      ...(requestTimeoutS !== undefined ? { requestTimeoutS } : {}),
      ...(streamTimeoutS !== undefined ? { streamTimeoutS } : {}),
    };
    return streamResult(deps, data, result, abort, started);
  }

  private origin(requestId: string | undefined): ReplyOrigin {
    return replyOrigin(this.config.replicaId, this.config.version, requestId);
  }

  /** A request the handler did not answer: it threw, ran past requestTimeoutS, or called json() on a body that is not JSON. */
  private errorReply(data: RequestJob, err: unknown): Reply {
    const origin = this.origin(data.requestId);
    if (err instanceof RequestTimeout) return errorReply("TIMEOUT", err.message, origin);
    if (err instanceof StreamStopped) return errorReply(err.timeout ? "TIMEOUT" : "HANDLER_ERROR", err.message, origin);
    if (err instanceof BodyNotJson) return errorReply("INVALID_REQUEST", err.message, origin);
    const message = errorMessage(err);
    this.log.warn({ err: message, job: data.requestId }, "handler threw");
    return errorReply("HANDLER_ERROR", message, origin);
  }

  private async sendReply(replyTo: string, reply: Reply): Promise<void> {
    if (!this.replyLists.accepts(replyTo)) {
      this.warnThrottled("refusing to reply to a key outside this namespace's reply lists", replyTo);
      return;
    }
    await this.replies.add(replyTo, JSON.stringify(reply), this.inflight <= 1);
  }

  private async pushReplies(key: string, values: string[]): Promise<void[]> {
    await this.replyLists.push(key, values);
    return values.map(() => undefined);
  }
}

/**
 * The request a handler gets: the request's fields as its own, `signal` and
 * `json()` from the prototype, so every request has one shape (an object
 * literal with a getter and a spread costs a replica more per request).
 */
class HandlerRequest implements HttpRequest {
  readonly method: string;
  readonly path: string;
  readonly subPath: string;
  readonly query: Record<string, string | string[]>;
  readonly headers: Record<string, string>;
  readonly body: string;
  readonly #abort: Abortable;

  constructor(http: HttpRequestData, abort: Abortable) {
    this.method = http.method;
    this.path = http.path;
    this.subPath = http.subPath;
    this.query = http.query;
    this.headers = http.headers;
    this.body = http.body;
    this.#abort = abort;
  }

  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  json<T = unknown>(): T {
    if (this.body === "") return null as T;
    try {
      return JSON.parse(this.body) as T;
    } catch (err) {
      throw new BodyNotJson(errorMessage(err));
    }
  }
}

/** A handler's context: `signal` from the prototype, made only when read (RequestAbort). */
class HandlerContext implements RequestContext {
  readonly #abort: Abortable;
  readonly progress: RequestContext["progress"];

  constructor(abort: Abortable, progress: RequestContext["progress"]) {
    this.#abort = abort;
    this.progress = progress;
  }

  get signal(): AbortSignal {
    return this.#abort.signal;
  }
}

const isThenable = (value: unknown): value is PromiseLike<unknown> =>
  (typeof value === "object" || typeof value === "function") && value !== null && typeof (value as { then?: unknown }).then === "function";

/** The progress() of a request that is not async: nothing to report to. */
const noProgress = (): Promise<void> => Promise.resolve();

class RequestTimeout extends Error {
  constructor(seconds: number) {
    super(`the handler did not finish within requestTimeoutS (${seconds} s)`);
  }
}

/** What `request.json()` throws on a body that is not JSON: the caller's mistake, answered 400, not the handler's. */
class BodyNotJson extends FlotillaError {
  constructor(reason: string) {
    super("INVALID_REQUEST", `the request body is not valid JSON: ${reason}`);
  }
}
