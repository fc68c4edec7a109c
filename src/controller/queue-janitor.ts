/**
 * Answers requests that no replica will answer: jobs that failed because their
 * replica crashed more than maxRetries times, and requests still queued for a
 * deployment that was deleted. Then the deleted deployment's queue goes. Also
 * deletes the demand counts of requesters that died.
 */
import type { Redis } from "ioredis";
import { errorMessage, type ErrorCode } from "../errors.js";
import type { Keys } from "../shared/keys.js";
import type { Logger } from "../shared/logger.js";
import { replyAddress, requestsOf } from "../shared/job-data.js";
import { errorReply, replyOrigin } from "../shared/reply.js";
import { DeploymentQueue } from "../queue/deployment-queue.js";
import { ReplyLists } from "../queue/reply-lists.js";
import { AsyncRecords, isAsyncId } from "../queue/async-requests.js";
import type { QueueDepth } from "../queue/queue-depths.js";
import { deleteStale } from "../queue/requester-demand.js";

export class QueueJanitor {
  private readonly queues = new Map<string, DeploymentQueue>();
  private readonly replyLists: ReplyLists;
  private readonly asyncRecords: AsyncRecords;

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly log: Logger,
  ) {
    this.replyLists = new ReplyLists(redis, keys);
    this.asyncRecords = new AsyncRecords(redis, keys);
  }

  private queue(name: string): DeploymentQueue {
    let q = this.queues.get(name);
    if (!q) {
      q = new DeploymentQueue(this.redis, this.keys.namespace, name);
      this.queues.set(name, q);
    }
    return q;
  }

  /** Answers every request a job carries (one, or each of a batch), whatever shape its data has; an async one in its record. */
  private async answer(deployment: string, data: unknown, code: ErrorCode, message: string): Promise<void> {
    for (const request of requestsOf(data)) {
      const { replyTo, requestId } = replyAddress(request);
      const asyncId = (request as { asyncId?: unknown } | null)?.asyncId;
      if (typeof asyncId === "string" && isAsyncId(asyncId)) {
        const { status, headers, body, error } = errorReply(code, message, replyOrigin("", "", requestId));
        await this.asyncRecords.finish(asyncId, deployment, "failed", { status, headers, body, ...(error ? { error } : {}) });
      }
      if (replyTo === undefined || !this.replyLists.accepts(replyTo)) continue;
      const reply = errorReply(code, message, replyOrigin("", "", requestId));
      await this.replyLists.push(replyTo, [JSON.stringify(reply)]);
    }
  }

  /** Failed jobs get a REPLICA_CRASHED answer and are removed. */
  async answerFailed(name: string): Promise<void> {
    try {
      const queue = this.queue(name);
      const jobs = await queue.failed(200);
      for (const job of jobs) {
        const reason = job.failedReason || "the replica running it ended";
        await this.answer(name, job.data, "REPLICA_CRASHED", `request ${job.id} of '${name}' failed: ${reason}`);
        await queue.remove(job.id).catch(() => undefined);
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
      const waiting = await queue.unanswered();
      for (const job of waiting) await this.answer(name, job.data, "NOT_FOUND", `deployment '${name}' was deleted before the request ran`);
      await queue.obliterate();
      await queue.close();
      this.queues.delete(name);
      this.log.info({ deployment: name, answered: waiting.length }, "deployment deleted; queue removed");
    } catch (err) {
      this.log.warn({ deployment: name, err: errorMessage(err) }, "could not remove the deleted deployment's queue");
    }
  }

  /**
   * Deletes the demand counts of requesters that stopped refreshing them (they
   * died), as queue depths just read found them, so no reader has to. A count
   * written again since it was read stays.
   */
  async forgetDeadRequesters(depths: Iterable<readonly [string, QueueDepth | undefined]>): Promise<void> {
    try {
      const counts = await Promise.all([...depths].map(([name, depth]) => (depth?.stale ? deleteStale(this.redis, this.keys, name, depth.stale) : 0)));
      const deleted = counts.reduce((a, b) => a + b, 0);
      if (deleted > 0) this.log.info({ deleted }, "deleted the demand counts of requesters that stopped");
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, "could not delete stale requester counts");
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.queues.values()].map((q) => q.close().catch(() => undefined)));
    this.queues.clear();
  }
}
