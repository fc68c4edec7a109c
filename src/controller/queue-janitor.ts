/**
 * Answers requests that no replica will answer: jobs that failed because their
 * replica crashed more than maxRetries times, and requests still queued for a
 * deployment that was deleted. Then the deleted deployment's queue goes.
 */
import type { Job } from "bullmq";
import { Queue } from "../shared/bullmq-classes.js";
import type { Redis } from "ioredis";
import { ERROR_CODES, errorMessage, type ErrorCode } from "../errors.js";
import type { Keys } from "../shared/keys.js";
import type { Logger } from "../shared/logger.js";
import type { QueueJob, Reply, RequestJob } from "../shared/protocol.js";

export class QueueJanitor {
  private readonly queues = new Map<string, Queue>();

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly log: Logger,
  ) {}

  private queue(name: string): Queue {
    let q = this.queues.get(name);
    if (!q) {
      q = new Queue(this.keys.queueName(name), { connection: this.redis, prefix: this.keys.queuePrefix });
      q.on("error", () => undefined);
      this.queues.set(name, q);
    }
    return q;
  }

  /** Answers every request a job carries (one, or each of a batch). */
  private async answer(job: Job, code: ErrorCode, message: string): Promise<void> {
    const data = job.data as QueueJob | undefined;
    const requests = data?.kind === "batch" ? data.requests : data ? [data] : [];
    for (const request of requests) await this.answerOne(request, code, message);
  }

  private async answerOne(data: RequestJob, code: ErrorCode, message: string): Promise<void> {
    if (!data?.replyTo?.startsWith(this.keys.repliesPrefix)) return;
    const error = { code, message };
    const reply: Reply = {
      ...(data.requestId !== undefined ? { requestId: data.requestId } : {}),
      status: ERROR_CODES[code].status,
      headers: { "content-type": "application/json; charset=utf-8" },
      body: JSON.stringify({ error }),
      error,
      replica: "",
      version: "",
    };
    await this.redis.pipeline().rpush(data.replyTo, JSON.stringify(reply)).pexpire(data.replyTo, 120_000).exec();
  }

  /** Failed jobs get a REPLICA_CRASHED answer and are removed. */
  async answerFailed(name: string): Promise<void> {
    try {
      const jobs = await this.queue(name).getFailed(0, 199);
      for (const job of jobs) {
        const reason = job.failedReason || "the replica running it ended";
        await this.answer(job, "REPLICA_CRASHED", `request ${job.id} of '${name}' failed: ${reason}`);
        await job.remove().catch(() => undefined);
      }
      if (jobs.length > 0) this.log.warn({ deployment: name, count: jobs.length }, "answered requests whose replicas kept crashing");
    } catch (err) {
      this.log.warn({ deployment: name, err: errorMessage(err) }, "could not answer failed requests");
    }
  }

  /** A deleted deployment: answer what still waits with NOT_FOUND, then drop the queue. */
  async retire(name: string): Promise<void> {
    try {
      const queue = this.queue(name);
      const waiting = await queue.getJobs(["wait", "prioritized", "delayed", "failed"], 0, -1);
      for (const job of waiting) await this.answer(job, "NOT_FOUND", `deployment '${name}' was deleted before the request ran`);
      await queue.obliterate({ force: true });
      await queue.close();
      this.queues.delete(name);
      this.log.info({ deployment: name, answered: waiting.length }, "deployment deleted; queue removed");
    } catch (err) {
      this.log.warn({ deployment: name, err: errorMessage(err) }, "could not remove the deleted deployment's queue");
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close().catch(() => undefined)));
    this.queues.clear();
  }
}
