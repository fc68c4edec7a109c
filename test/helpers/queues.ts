/** BullMQ queues of one suite on the real Redis, in a namespace of their own that is removed after the suite. */
import { after } from "node:test";
import type { Queue as BullQueue } from "bullmq";
import type { Redis } from "ioredis";
import { Queue } from "../../src/queue/bullmq.js";
import { QueueKeys } from "../../src/queue/queue-keys.js";
import { Keys } from "../../src/shared/keys.js";
import { cleanupNamespace, testNamespace, testRedis } from "./redis.js";
import { waitFor } from "./wait.js";

export interface QueueFixture {
  namespace: string;
  keys: Keys;
  /** The keys of the namespace's queues. */
  queueKeys: QueueKeys;
  /** A connection for the suite's own commands (and its queues). */
  redis: Redis;
  /** Run after the suite, last registered first: close workers and their connections here. */
  closers: Array<() => Promise<unknown>>;
  /** A queue in the namespace, closed after the suite. */
  queue(name: string): Queue;
}

/** Call inside `describe`: the clean-up is an `after` hook of that suite. */
export function queueFixture(label: string): QueueFixture {
  const namespace = testNamespace(label);
  const keys = new Keys(namespace);
  const queueKeys = new QueueKeys(namespace);
  const redis = testRedis();
  const closers: Array<() => Promise<unknown>> = [];
  after(async () => {
    for (const close of closers.reverse()) await close().catch(() => undefined);
    redis.disconnect();
    await cleanupNamespace(namespace);
  });
  return {
    namespace,
    keys,
    queueKeys,
    redis,
    closers,
    queue(name) {
      const q = new Queue(queueKeys.name(name), { connection: redis, prefix: queueKeys.prefix });
      closers.push(() => q.close());
      return q;
    },
  };
}

/** Adds a job as any BullMQ client would, waits until it completed, and resolves with its return value. */
export async function runAsPlainClient(queue: BullQueue, data: unknown): Promise<unknown> {
  const job = await queue.add("request", data, { removeOnComplete: false });
  const done = await waitFor(`job ${job.id} to complete`, async () => ((await queue.getJobState(job.id!)) === "completed" ? await queue.getJob(job.id!) : undefined), {
    describe: async () => ({ state: await queue.getJobState(job.id!), failed: (await queue.getJob(job.id!))?.failedReason }),
  });
  return done.returnvalue;
}
