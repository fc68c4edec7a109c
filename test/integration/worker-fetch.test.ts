/**
 * The replica's BullMQ worker on the real Redis: idle, it starts a job as soon
 * as it has it, without first waiting for another fetch; busy, it still fills
 * its concurrency.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { after, describe, it } from "node:test";
import type { Job } from "bullmq";
import { Keys } from "../../src/shared/keys.js";
import { Queue, startJobsAtOnceWhenIdle, Worker } from "../../src/shared/bullmq-classes.js";
import { cleanupNamespace, testNamespace, testRedis } from "../helpers/redis.js";
import { waitFor } from "../helpers/wait.js";

describe("replica worker fetching", () => {
  const namespace = testNamespace("fetch");
  const keys = new Keys(namespace);
  const redis = testRedis();
  const closers: Array<() => Promise<unknown>> = [];
  after(async () => {
    for (const close of closers.reverse()) await close().catch(() => undefined);
    redis.disconnect();
    await cleanupNamespace(namespace);
  });

  /** A worker (patched or not) whose fetches from Redis are counted. */
  async function worker(name: string, patched: boolean, processor: (job: Job) => Promise<unknown>, concurrency: number) {
    const queue = new Queue(keys.queueName(name), { connection: redis, prefix: keys.queuePrefix });
    let running = 0;
    const w = new Worker(
      keys.queueName(name),
      async (job) => {
        running++;
        try {
          return await processor(job);
        } finally {
          running--;
        }
      },
      { connection: testRedis(), prefix: keys.queuePrefix, concurrency, autorun: false },
    );
    const counted = w as unknown as { moveToActive(...args: unknown[]): Promise<unknown> };
    const fetchFromRedis = counted.moveToActive.bind(w);
    /** fetches: moveToActive calls so far; jobFetch: the number of the call that returned the latest job. */
    const stats = { fetches: 0, jobFetch: 0 };
    counted.moveToActive = async (...args) => {
      const n = ++stats.fetches;
      const job = await fetchFromRedis(...args);
      if (job) stats.jobFetch = n;
      return job;
    };
    if (patched) startJobsAtOnceWhenIdle(w, () => running === 0);
    closers.push(
      () => queue.close(),
      async () => {
        await w.close(true);
        w.opts.connection && (w.opts.connection as { disconnect(): void }).disconnect();
      },
    );
    const drained = once(w, "drained", { signal: AbortSignal.timeout(10_000) }).catch(() => {
      throw new Error(`worker ${name} did not report an empty queue within 10 s`);
    });
    void w.run();
    await drained;
    return { queue, worker: w, stats };
  }

  it("starts a job as soon as it is fetched when idle; BullMQ alone first waits for another fetch", async () => {
    // Requests one at a time, as from one client: each is added once the one before has completed.
    const later: Record<string, number[]> = {};
    for (const patched of [true, false]) {
      const name = patched ? "idle-patched" : "idle-plain";
      const seen: number[] = [];
      const w = await worker(name, patched, async () => {
        // Fetches that began after the one that brought this job, before the job started.
        seen.push(w.stats.fetches - w.stats.jobFetch);
        return "done";
      }, 10);
      for (let i = 0; i < 20; i++) {
        const job = await w.queue.add("r", { i });
        await waitFor(`${name} job ${job.id} to complete`, async () => (await w.queue.getJobState(job.id!)) === "completed");
      }
      later[name] = seen;
    }
    assert.deepEqual(later["idle-patched"], Array(20).fill(0), `patched: ${JSON.stringify(later)}`);
    assert.ok(later["idle-plain"]!.some((n) => n > 0), `plain BullMQ fetched again before starting some job: ${JSON.stringify(later)}`);
  });

  it("keeps running up to its concurrency when busy, and completes every job", async () => {
    let now = 0;
    let most = 0;
    const w = await worker("busy", true, async () => {
      most = Math.max(most, ++now);
      await new Promise((r) => setTimeout(r, 20));
      now--;
      return "ok";
    }, 8);
    await w.queue.addBulk(Array.from({ length: 120 }, (_, i) => ({ name: "r", data: { i } })));
    await waitFor("120 jobs completed", async () => ((await w.queue.getJobCounts("completed")).completed ?? 0) >= 120 || undefined, {
      timeoutMs: 30_000,
      describe: () => w.queue.getJobCounts(),
    });
    const counts = await w.queue.getJobCounts("completed", "failed", "wait", "active");
    assert.deepEqual(counts, { completed: 120, failed: 0, wait: 0, active: 0 });
    assert.equal(most, 8, `at most 8 at once, and 8 reached (saw ${most})`);
  });
});
