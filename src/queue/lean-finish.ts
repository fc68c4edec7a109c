/**
 * The lean finish of a job answered on a requester's reply list: the job's
 * completion and its reply in one script (LEAN_FINISH), without BullMQ's
 * event stream entries, metrics and fetch of the next job, which nobody
 * reads or needs for such a job. A job without a reply list (a plain BullMQ
 * client's, which waits for the 'completed' event) completes the BullMQ way.
 */
import type { Logger } from "../shared/logger.js";
import type { Job, Worker } from "./bullmq.js";
import { missingMembers, warnFallbackOnce } from "./internals-check.js";
import { LEAN_FINISH } from "./lean-scripts.js";
import { REPLY_TTL_MS } from "./reply-lists.js";
import type { WaitLane } from "./tuned-worker.js";

/**
 * What a processor returns for a job whose requester reads its answer from a
 * reply list, not from the job's completion: the job's return value, and the
 * replies to push with its completion (none when they were sent already).
 */
export class Answered {
  constructor(
    readonly returnValue: unknown,
    readonly replyList?: string,
    readonly replies: readonly string[] = [],
  ) {}
}

interface ClientLike {
  evalsha(...args: unknown[]): Promise<unknown>;
  eval(...args: unknown[]): Promise<unknown>;
  isCluster?: boolean;
}

type MoveToCompleted = (job: Job, returnValue: unknown, removeOnComplete: unknown, token: string, fetchNext: boolean) => Promise<{ result: unknown; finishedOn: number }>;

interface FinishInternals {
  waiting?: unknown;
  opts: { name?: string; metrics?: unknown; removeOnComplete?: unknown };
  backend?: {
    moveToCompleted?: MoveToCompleted;
    moveToActive?: (token: string, name?: string) => Promise<unknown>;
    finishedErrors?: (args: { code: number; jobId?: string; command: string; state?: string }) => Error;
    queue?: { client?: Promise<ClientLike>; keys?: Record<string, string>; closing?: unknown };
  };
}

const FINISH_INTERNALS = {
  "backend.moveToCompleted": "function",
  "backend.moveToActive": "function",
  "backend.queue.client": "object",
  "backend.queue.keys": "object",
} as const;

/** Whether BullMQ removes `job` on completion (the worker's default here is to remove, count 0). */
function removedOnComplete(removeOnComplete: unknown, workerDefault: unknown): boolean {
  const keep = removeOnComplete ?? workerDefault;
  if (keep === true || keep === 0) return true;
  return typeof keep === "object" && keep !== null && (keep as { count?: unknown }).count === 0 && (keep as { age?: unknown }).age === undefined;
}

/**
 * Installs the lean finish on `worker`. Returns how a processor's Answered
 * result is handled: held for the finish (its replies go in the finish
 * script), or, when the lean finish is not installed, its replies pushed by
 * `push` before the job completes the BullMQ way.
 */
export function leanFinish(
  worker: Worker,
  push: (list: string, replies: readonly string[]) => Promise<void>,
  log?: Logger,
  lane?: WaitLane,
): (job: Job, answered: Answered) => Promise<unknown> {
  const target = worker as unknown as FinishInternals;
  const missing = missingMembers(worker, FINISH_INTERNALS);
  warnFallbackOnce("the lean job finish", missing, log);
  const backend = target.backend;
  const original = backend?.moveToCompleted;
  const keys = backend?.queue?.keys;
  const pushFirst = async (job: Job, answered: Answered): Promise<unknown> => {
    if (answered.replyList && answered.replies.length > 0) await push(answered.replyList, answered.replies);
    return answered.returnValue;
  };
  if (missing.length > 0 || !backend || !original || !keys?.active || !keys.stalled || keys[""] === undefined) return pushFirst;

  const held = new WeakMap<Job, Answered>();
  backend.moveToCompleted = async (job, returnValue, removeOnComplete, token, fetchNext) => {
    // Kept until its replies are in Redis: a finish BullMQ retries after a connection error sends them again.
    const answered = held.get(job);
    const plain = job as unknown as { parentKey?: string; parent?: unknown; repeatJobKey?: string; deduplicationId?: string };
    const lean =
      answered !== undefined &&
      job.id !== undefined &&
      !plain.parentKey &&
      !plain.parent &&
      !plain.repeatJobKey &&
      !plain.deduplicationId &&
      !target.opts.metrics &&
      removedOnComplete(removeOnComplete, target.opts.removeOnComplete);
    if (!lean) {
      if (answered) await pushFirst(job, answered);
      held.delete(job);
      return original.call(backend, job, returnValue, removeOnComplete, token, fetchNext);
    }
    const client = await (backend.queue?.client as Promise<ClientLike>);
    const id = String(job.id);
    // On a Redis Cluster the reply list lives in another slot than the queue: pushed first, on its own.
    const together = !client.isCluster && answered.replyList !== undefined && answered.replies.length > 0;
    if (!together) {
      await pushFirst(job, answered);
      held.delete(job);
    }
    const scriptKeys = [keys.active as string, keys.stalled as string, `${keys[""]}${id}`, ...(together ? [answered.replyList as string] : [])];
    const args = [id, token, REPLY_TTL_MS, ...(together ? answered.replies : [])];
    // Ahead of the worker's next wait, in one write with it, when that wait is about to be sent (see WaitLane).
    const ahead = lane?.ahead();
    const finished = ahead ? LEAN_FINISH.run(ahead.client as never, scriptKeys, args, client as never) : LEAN_FINISH.run(client as never, scriptKeys, args);
    ahead?.release();
    const code = Number(await finished);
    held.delete(job);
    if (code < 0) {
      throw backend.finishedErrors?.({ code, jobId: id, command: "moveToFinished", state: "active" }) ?? new Error(`job ${id} could not be completed (code ${code})`);
    }
    const finishedOn = Date.now();
    // BullMQ's finish fetches the next job in the same script; here that is only worth a round trip when no wait is out for one.
    if (fetchNext && !target.waiting && !backend.queue?.closing && backend.moveToActive) {
      return { result: await backend.moveToActive(token, target.opts.name), finishedOn };
    }
    return { result: undefined, finishedOn };
  };
  return async (job, answered) => {
    held.set(job, answered);
    return answered.returnValue;
  };
}
