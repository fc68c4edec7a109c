/**
 * A replica's part in async requests: it marks a request running before the
 * handler sees it (a cancelled one never runs), stores the progress the
 * handler reports, writes the answer into the request's record, and aborts a
 * running request when it is cancelled (a pub/sub message every replica
 * running async requests listens to, on its one subscriber connection).
 */
import type { Redis } from "ioredis";
import { errorMessage } from "../errors.js";
import type { Keys } from "../shared/keys.js";
import type { Logger } from "../shared/logger.js";
import type { Reply } from "../shared/protocol.js";
import { AsyncRecords, progressJson, type AsyncResult } from "../queue/async-requests.js";
import type { CancelSubscriber } from "./cancel-subscriber.js";

/** An async request the replica runs: report progress, learn of a cancel. */
export interface AsyncRun {
  progress(value: unknown): Promise<void>;
  /** Fires when the request is cancelled. */
  cancelled: AbortSignal;
}

/** The part of a reply a poll shows as `result`: what a synchronous caller would have got. */
export function asyncResult(reply: Reply): AsyncResult {
  return {
    status: reply.status,
    headers: reply.headers,
    body: reply.body,
    ...(reply.base64 ? { base64: true } : {}),
    ...(reply.value !== undefined ? { value: reply.value } : {}),
    ...(reply.error ? { error: reply.error } : {}),
  };
}

export class AsyncJobs {
  private readonly records: AsyncRecords;
  private readonly running = new Map<string, AbortController>();

  constructor(
    redis: Redis,
    private readonly subscriber: CancelSubscriber,
    private readonly keys: Keys,
    private readonly deployment: string,
    private readonly log: Logger,
  ) {
    this.records = new AsyncRecords(redis, keys);
  }

  /** Cancels reach a replica on its subscriber connection, subscribed when it first runs an async request. */
  private listen(): Promise<void> {
    return this.subscriber.listen(this.keys.asyncCancels, (id) => this.running.get(id)?.abort(new Error("the async request was cancelled")));
  }

  /**
   * Takes an async request: undefined when it must not run (cancelled, already
   * finished, or its record gone), else the run. A cancel that came before the
   * subscription is seen by reading the status once subscribed.
   */
  async begin(id: string): Promise<AsyncRun | undefined> {
    const status = await this.records.start(id);
    if (status !== "running") {
      this.log.info({ asyncId: id, status: status ?? "gone" }, "async request not run");
      return undefined;
    }
    const controller = new AbortController();
    this.running.set(id, controller);
    await this.listen().catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, "could not listen for async cancels"));
    const now = (await this.records.read(id))?.status;
    if (now !== "running") controller.abort(new Error("the async request was cancelled"));
    return {
      cancelled: controller.signal,
      progress: async (value: unknown) => {
        const json = progressJson(value);
        await this.records.progress(id, json);
      },
    };
  }

  /** Writes the answer (kept unless the request was cancelled meanwhile) and forgets the run. */
  async end(id: string, reply: Reply): Promise<void> {
    this.running.delete(id);
    await this.records.finish(id, this.deployment, reply.error ? "failed" : "succeeded", asyncResult(reply));
  }

  /** Aborts what still runs; the subscriber is its owner's to close. */
  close(): void {
    for (const c of this.running.values()) c.abort(new Error("replica stopped"));
  }
}
