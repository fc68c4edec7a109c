/**
 * The replica's BullMQ worker on the real Redis, with the idle tuning
 * (tuneIdleWorker): idle, it starts a job as soon as it has it and asks Redis
 * for one job per job; busy, it still fills its concurrency; and no job is
 * started late, lost, run twice or left locked, with several workers on one
 * queue, delayed jobs, or a worker closed while it waits.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { describe, it } from "node:test";
import type { Job } from "bullmq";
import { Worker } from "../../src/queue/bullmq.js";
import { tuneIdleWorker } from "../../src/queue/tuned-worker.js";
import { queueFixture } from "../helpers/queues.js";
import { testRedis } from "../helpers/redis.js";
import { waitFor } from "../helpers/wait.js";

/** A job that waits longer than this to start was woken by BullMQ's 5 s wait timeout, not by its own arrival. */
const PROMPT_MS = 1000;

describe("replica worker fetching", () => {
  const { queueKeys, redis, closers, queue } = queueFixture("fetch");

  /** A worker (tuned or not) whose fetches (moveToActive scripts sent to Redis) and blocking waits are counted. */
  async function worker(name: string, tuned: boolean, processor: (job: Job) => Promise<unknown>, concurrency: number) {
    let running = 0;
    const connection = testRedis();
    const w = new Worker(
      queueKeys.name(name),
      async (job) => {
        running++;
        try {
          return await processor(job);
        } finally {
          running--;
        }
      },
      { connection, prefix: queueKeys.prefix, concurrency, autorun: false },
    );
    const internals = w as unknown as {
      moveToActive(...args: unknown[]): Promise<unknown>;
      backend: { moveToActive(...args: unknown[]): Promise<unknown>; waitForJob(...args: unknown[]): Promise<unknown> };
    };
    /** fetches: moveToActive scripts sent; waits: blocking waits; asked: the worker's own fetch calls; jobFetch: the number of the call that returned the latest job. */
    const stats = { fetches: 0, waits: 0, asked: 0, jobFetch: 0 };
    const sendFetch = internals.backend.moveToActive.bind(internals.backend);
    internals.backend.moveToActive = (...args) => {
      stats.fetches++;
      return sendFetch(...args);
    };
    const sendWait = internals.backend.waitForJob.bind(internals.backend);
    internals.backend.waitForJob = (...args) => {
      stats.waits++;
      return sendWait(...args);
    };
    const askFetch = internals.moveToActive.bind(w);
    internals.moveToActive = async (...args) => {
      const n = ++stats.asked;
      const job = await askFetch(...args);
      if (job) stats.jobFetch = n;
      return job;
    };
    if (tuned) {
      tuneIdleWorker(w, () => running === 0, {
        marker: queueKeys.key(name, "marker"),
        wait: queueKeys.key(name, "wait"),
        prioritized: queueKeys.key(name, "prioritized"),
        delayed: queueKeys.key(name, "delayed"),
      });
    }
    closers.push(async () => {
      await w.close(true);
      connection.disconnect();
    });
    const drained = once(w, "drained", { signal: AbortSignal.timeout(10_000) }).catch(() => {
      throw new Error(`worker ${name} did not report an empty queue within 10 s`);
    });
    void w.run();
    await drained;
    return { worker: w, stats };
  }

  it("idle, starts each job as soon as it has it, with one fetch and one wait per job; BullMQ alone fetches about three times", async () => {
    // Requests one at a time, as from one client: each is added once the one before has completed.
    const JOBS = 20;
    const result: Record<string, { later: number[]; fetches: number; waits: number; slowest: number }> = {};
    for (const tuned of [true, false]) {
      const name = tuned ? "idle-tuned" : "idle-plain";
      const q = queue(name);
      const later: number[] = [];
      const addedAt = new Map<string, number>();
      let slowest = 0;
      const w = await worker(name, tuned, async (job) => {
        slowest = Math.max(slowest, performance.now() - (addedAt.get(job.id!) ?? Infinity));
        // Fetches the worker asked for after the one that brought this job, before the job started.
        later.push(w.stats.asked - w.stats.jobFetch);
        return "done";
      }, 10);
      // Settle: the worker is waiting for work; count from here.
      await waitFor(`${name} to block on its wait`, () => w.stats.waits > 0);
      const before = { ...w.stats };
      for (let i = 0; i < JOBS; i++) {
        const t = performance.now();
        const job = await q.add("r", { i });
        addedAt.set(job.id!, t);
        await waitFor(`${name} job ${job.id} to complete`, async () => (await q.getJobState(job.id!)) === "completed");
      }
      result[name] = { later, fetches: w.stats.fetches - before.fetches, waits: w.stats.waits - before.waits, slowest: Math.round(slowest) };
    }
    const summary = JSON.stringify(result);
    const tuned = result["idle-tuned"]!;
    const plain = result["idle-plain"]!;
    assert.deepEqual(tuned.later, Array(JOBS).fill(0), `tuned: no fetch between a job's arrival and its start: ${summary}`);
    assert.ok(tuned.fetches <= JOBS + 1, `tuned: one fetch per job (plus the one riding with the wait in progress): ${summary}`);
    assert.ok(tuned.waits <= JOBS + 1, `tuned: one wait per job: ${summary}`);
    assert.ok(tuned.slowest < PROMPT_MS, `tuned: every job started within ${PROMPT_MS} ms of its add: ${summary}`);
    assert.ok(plain.later.some((n) => n > 0), `plain BullMQ fetched again before starting some job: ${summary}`);
    assert.ok(plain.fetches >= 2 * JOBS, `plain BullMQ fetches more than once per job: ${summary}`);
  });

  it("keeps running up to its concurrency when busy, and completes every job", async () => {
    const q = queue("busy");
    let now = 0;
    let most = 0;
    await worker("busy", true, async () => {
      most = Math.max(most, ++now);
      await new Promise((r) => setTimeout(r, 20));
      now--;
      return "ok";
    }, 8);
    await q.addBulk(Array.from({ length: 120 }, (_, i) => ({ name: "r", data: { i } })));
    await waitFor("120 jobs completed", async () => ((await q.getJobCounts("completed")).completed ?? 0) >= 120 || undefined, {
      timeoutMs: 30_000,
      describe: () => q.getJobCounts(),
    });
    const counts = await q.getJobCounts("completed", "failed", "wait", "active");
    assert.deepEqual(counts, { completed: 120, failed: 0, wait: 0, active: 0 });
    assert.equal(most, 8, `at most 8 at once, and 8 reached (saw ${most})`);
  });

  it("three workers on one queue, jobs in bursts and alone: each runs once, none starts late", async () => {
    const q = queue("shared");
    const runs = new Map<string, number>();
    const addedAt = new Map<string, number>();
    const lateStarts: string[] = [];
    for (let n = 0; n < 3; n++) {
      await worker("shared", true, async (job) => {
        const waited = performance.now() - (addedAt.get(job.id!) ?? performance.now());
        if (waited > PROMPT_MS) lateStarts.push(`${job.id} after ${Math.round(waited)} ms`);
        runs.set(job.id!, (runs.get(job.id!) ?? 0) + 1);
        await new Promise((r) => setTimeout(r, job.data.i % 3));
        return job.data.i;
      }, 4);
    }
    // 60 rounds: one job, or a burst of up to 12, with pauses long enough for every worker to go back to its wait.
    let total = 0;
    for (let round = 0; round < 60; round++) {
      const size = round % 3 === 0 ? 1 + (round % 12) : 1;
      const t = performance.now();
      const jobs = await q.addBulk(Array.from({ length: size }, () => ({ name: "r", data: { i: total++ } })));
      for (const job of jobs) addedAt.set(job.id!, t);
      if (round % 2 === 0) await waitFor(`round ${round} to complete`, async () => ((await q.getJobCounts("completed")).completed ?? 0) >= total || undefined);
    }
    await waitFor(`${total} jobs completed`, async () => ((await q.getJobCounts("completed")).completed ?? 0) >= total || undefined, {
      timeoutMs: 30_000,
      describe: () => q.getJobCounts(),
    });
    assert.deepEqual(await q.getJobCounts("completed", "failed", "wait", "active", "delayed"), { completed: total, failed: 0, wait: 0, active: 0, delayed: 0 });
    assert.deepEqual([...runs.values()].filter((n) => n !== 1), [], "no job ran twice");
    assert.equal(runs.size, total);
    assert.deepEqual(lateStarts, [], `every job started within ${PROMPT_MS} ms of its add`);
  });

  it("runs a delayed job when it is due, whatever an idle worker did meanwhile", async () => {
    const q = queue("delayed");
    const started = new Map<string, number>();
    await worker("delayed", true, async (job) => {
      started.set(job.id!, performance.now());
      return "ok";
    }, 4);
    // Orders in which an idle worker sees a delayed job's marker and other jobs.
    const scenarios: Array<{ name: string; run(): Promise<{ delayedId: string; t: number; others: string[] }> }> = [
      { name: "delayed alone", run: async () => ({ t: performance.now(), delayedId: (await q.add("later", {}, { delay: 400 })).id!, others: [] }) },
      {
        name: "delayed, then one now",
        run: async () => {
          const t = performance.now();
          const delayedId = (await q.add("later", {}, { delay: 400 })).id!;
          return { t, delayedId, others: [(await q.add("now", {})).id!] };
        },
      },
      {
        name: "one now, then delayed",
        run: async () => {
          const now = (await q.add("now", {})).id!;
          const t = performance.now();
          return { t, delayedId: (await q.add("later", {}, { delay: 400 })).id!, others: [now] };
        },
      },
      {
        name: "delayed, then several now while the first runs",
        run: async () => {
          const t = performance.now();
          const delayedId = (await q.add("later", {}, { delay: 400 })).id!;
          const others = (await q.addBulk([{ name: "now", data: {} }, { name: "now", data: {} }, { name: "now", data: {} }])).map((j) => j.id!);
          others.push((await q.add("now", {})).id!);
          return { t, delayedId, others };
        },
      },
    ];
    const seen: string[] = [];
    for (const scenario of scenarios) {
      const { t, delayedId, others } = await scenario.run();
      await waitFor(`${scenario.name}: every job started`, () => [delayedId, ...others].every((id) => started.has(id)), { describe: () => q.getJobCounts() });
      const delayedAt = Math.round(started.get(delayedId)! - t);
      const otherAt = others.map((id) => Math.round(started.get(id)! - t));
      seen.push(`${scenario.name}: delayed at ${delayedAt} ms, others at ${JSON.stringify(otherAt)}`);
      assert.ok(otherAt.every((ms) => ms < PROMPT_MS), `${scenario.name}: the undelayed jobs started at once: ${seen.join("; ")}`);
      assert.ok(delayedAt >= 390 && delayedAt < 400 + PROMPT_MS, `${scenario.name}: the delayed job started when due (delay 400): ${seen.join("; ")}`);
    }
  });

  it("a worker closed while it waits takes no job afterwards: a job added then stays waiting, unlocked", async () => {
    const q = queue("closed");
    const w = await worker("closed", true, async () => "ok", 2);
    await waitFor("the worker to block on its wait", () => w.stats.waits > 0);
    await w.worker.close();
    const job = await q.add("after-close", {});
    // Redis runs a fetch queued behind a blocking pop as soon as the pop returns, before this read.
    assert.equal(await q.getJobState(job.id!), "waiting");
    assert.equal(await redis.exists(queueKeys.key("closed", `${job.id}:lock`)), 0);
  });
});
