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
import { LEAN_FINISH, LEAN_FINISH_MANY } from "./lean-scripts.js";
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
  emit?: (event: "error", err: Error) => boolean;
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

/** What leanFinish installs: how a processor's Answered result is handled, and the lean finish itself. */
export interface LeanFinisher {
  /**
   * For a BullMQ job's processor: holds `answered` for the job's finish (its
   * replies go in the finish script) or, when the lean finish is not
   * installed, pushes its replies before the job completes the BullMQ way.
   */
  answer(job: Job, answered: Answered): Promise<unknown>;
  /**
   * Completes job `id`, locked with `token` and removed on completion, with
   * `answered`'s replies, in one script; throws BullMQ's error when the lock
   * is not the token's. Undefined when the lean finish is not installed.
   */
  finish?: (id: string, token: string, answered: Answered, queuedAhead?: boolean) => Promise<void>;
  /** Sends the finishes held back (see `queuedAhead`) at once, in one write; resolves once Redis has answered them. */
  flush?: () => Promise<void>;
}

/** How long a finish is held back at most (see `queuedAhead`). */
export const FINISH_HELD_MS = 5;

/**
 * Installs the lean finish on `worker`: a BullMQ job whose processor's
 * result went through `answer` completes the lean way when it qualifies.
 */
export function leanFinish(
  worker: Worker,
  push: (list: string, replies: readonly string[]) => Promise<void>,
  log?: Logger,
  lane?: WaitLane,
  /** Sends replies over the requester's socket; true when sent (see ReplySockets.send), and then the finish carries none. */
  send?: (list: string, replies: readonly string[]) => boolean,
): LeanFinisher {
  const target = worker as unknown as FinishInternals;
  const missing = missingMembers(worker, FINISH_INTERNALS);
  warnFallbackOnce("the lean job finish", missing, log);
  const backend = target.backend;
  const original = backend?.moveToCompleted;
  const keys = backend?.queue?.keys;
  const pushFirst = async (answered: Answered): Promise<unknown> => {
    if (answered.replyList && answered.replies.length > 0) await push(answered.replyList, answered.replies);
    return answered.returnValue;
  };
  if (missing.length > 0 || !backend || !original || !keys?.active || !keys.stalled || keys[""] === undefined) {
    return { answer: (_job, answered) => pushFirst(answered) };
  }

  /** Replies pushed on their own already: a finish retried after a connection error does not push them twice. */
  const pushed = new WeakSet<Answered>();

  /** Finishes held back (jobs without replies to push): each job's key, id and lock token. */
  let heldBack: { jobKey: string; id: string; token: string }[] = [];
  let heldTimer: NodeJS.Timeout | undefined;
  const lockError = (code: number, id: string): Error =>
    backend?.finishedErrors?.({ code, jobId: id, command: "moveToFinished", state: "active" }) ?? new Error(`job ${id} could not be completed (code ${code})`);
  const flush = async (): Promise<void> => {
    clearTimeout(heldTimer);
    heldTimer = undefined;
    const batch = heldBack;
    heldBack = [];
    if (batch.length === 0) return;
    const client = await (backend?.queue?.client as Promise<ClientLike>);
    // One script finishes them all.
    const jobKeys = batch.map((held) => held.jobKey);
    const idsAndTokens = batch.flatMap((held) => [held.id, held.token]);
    await LEAN_FINISH_MANY.run(client as never, [keys.active as string, keys.stalled as string, ...jobKeys], idsAndTokens).then(
      (codes) => {
        (codes as unknown[]).forEach((code, i) => {
          if (Number(code) < 0) target.emit?.("error", lockError(Number(code), batch[i]?.id ?? "?"));
        });
      },
      (err: unknown) => {
        target.emit?.("error", err instanceof Error ? err : new Error(String(err)));
      },
    );
  };

  /**
   * `queuedAhead`: the worker has waits queued on its blocking connection
   * (see ArmedWaits), so the finish goes on the other connection; and when
   * the replies went over the requester's socket, nobody waits for it: it
   * is held back until the worker next writes to Redis (flush),
   * FINISH_HELD_MS at most. The job stays in the active list, locked, until
   * then.
   */
  const finish = async (id: string, token: string, answered: Answered, queuedAhead = false): Promise<void> => {
    if (send && !pushed.has(answered) && answered.replyList !== undefined && answered.replies.length > 0 && send(answered.replyList, answered.replies)) pushed.add(answered);
    const client = await (backend.queue?.client as Promise<ClientLike>);
    // On a Redis Cluster the reply list lives in another slot than the queue: pushed first, on its own.
    const together = !pushed.has(answered) && !client.isCluster && answered.replyList !== undefined && answered.replies.length > 0;
    if (!together && !pushed.has(answered)) {
      await pushFirst(answered);
      pushed.add(answered);
    }
    const scriptKeys = [keys.active as string, keys.stalled as string, `${keys[""]}${id}`, ...(together ? [answered.replyList as string] : [])];
    const args = [id, token, REPLY_TTL_MS, ...(together ? answered.replies : [])];
    if (queuedAhead && !together) {
      heldBack.push({ jobKey: scriptKeys[2] as string, id, token });
      heldTimer ??= setTimeout(() => void flush(), FINISH_HELD_MS);
      return;
    }
    // Ahead of the worker's next wait, in one write with it, when that wait is about to be sent (see WaitLane).
    const ahead = queuedAhead ? undefined : lane?.ahead();
    const finished = ahead ? LEAN_FINISH.run(ahead.client as never, scriptKeys, args, client as never) : LEAN_FINISH.run(client as never, scriptKeys, args);
    ahead?.release();
    const code = Number(await finished);
    if (code < 0) throw lockError(code, id);
  };

  const held = new WeakMap<Job, Answered>();
  backend.moveToCompleted = async (job, returnValue, removeOnComplete, token, fetchNext) => {
    // Kept until its replies are in Redis: a finish BullMQ retries after a connection error sends them again.
    const answered = held.get(job);
    const lean = answered !== undefined && job.id !== undefined && leanQualifies(job, removeOnComplete, target.opts);
    if (!lean) {
      if (answered) await pushFirst(answered);
      held.delete(job);
      return original.call(backend, job, returnValue, removeOnComplete, token, fetchNext);
    }
    await finish(String(job.id), token, answered);
    held.delete(job);
    const finishedOn = Date.now();
    // BullMQ's finish fetches the next job in the same script; here that is only worth a round trip when no wait is out for one.
    if (fetchNext && !target.waiting && !backend.queue?.closing && backend.moveToActive) {
      return { result: await backend.moveToActive(token, target.opts.name), finishedOn };
    }
    return { result: undefined, finishedOn };
  };
  return {
    answer: async (job, answered) => {
      held.set(job, answered);
      return answered.returnValue;
    },
    finish,
    flush,
  };
}

/** A job's fields that decide whether it may complete the lean way (BullMQ's names for them on a Job and in its decoded data). */
export interface LeanQualifying {
  parentKey?: string;
  parent?: unknown;
  repeatJobKey?: string;
  deduplicationId?: string;
}

/**
 * Whether a job completes the lean way: no parent, repeat or deduplication
 * (whose bookkeeping is BullMQ's finish's), removed on completion, and no
 * metrics kept by the worker.
 */
export function leanQualifies(job: LeanQualifying | Job, removeOnComplete: unknown, workerOpts: { metrics?: unknown; removeOnComplete?: unknown }): boolean {
  const plain = job as LeanQualifying;
  return !plain.parentKey && !plain.parent && !plain.repeatJobKey && !plain.deduplicationId && !workerOpts.metrics && removedOnComplete(removeOnComplete, workerOpts.removeOnComplete);
}
