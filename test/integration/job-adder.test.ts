/**
 * jobAdder, the request path's lean add, on the real Redis: the jobs it
 * stores are the ones `queue.add` stores (same hash fields and values but the
 * time and id), they wait in order, a plain BullMQ worker runs them with their
 * data and options, and options it cannot take the lean way go through
 * `queue.add`.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Worker } from "../../src/queue/bullmq.js";
import { jobAdder } from "../../src/queue/job-adder.js";
import { REQUEST_JOB_OPTIONS } from "../../src/queue/deployment-queue.js";
import { queueFixture } from "../helpers/queues.js";
import { testRedis } from "../helpers/redis.js";
import { waitFor } from "../helpers/wait.js";

describe("jobAdder", () => {
  const { queueKeys, redis, closers, queue } = queueFixture("adder");

  /** A stored job's hash without the fields that differ between any two jobs. */
  async function storedJob(name: string, id: string): Promise<Record<string, string>> {
    const hash = await redis.hgetall(queueKeys.key(name, id));
    assert.ok(Object.keys(hash).length > 0, `job ${id} is stored`);
    assert.ok(Math.abs(Number(hash.timestamp) - Date.now()) < 60_000, `job ${id} has a current timestamp (${hash.timestamp})`);
    delete hash.timestamp;
    return hash;
  }

  it("stores the job queue.add stores, one at a time and in bulk, in the order added", async () => {
    const q = queue("same");
    const add = jobAdder(q, "request", REQUEST_JOB_OPTIONS);
    const data = { kind: "call", payload: { n: 1, text: "é ✓" }, replyTo: "r", requestId: "7" };
    // Sent before the adder learnt how Redis stores its options: the options go as BullMQ packs them.
    const early = add([data]);
    const viaQueue = await q.add("request", data, REQUEST_JOB_OPTIONS);
    const [first] = await early;
    // By now it knows: the options go as stored.
    const [lean] = await add([data]);
    assert.ok(first && lean && lean !== viaQueue.id);
    assert.deepEqual(await storedJob("same", first), await storedJob("same", viaQueue.id as string));
    assert.deepEqual(await storedJob("same", lean), await storedJob("same", viaQueue.id as string));

    const bulk = await add([{ n: 2 }, { n: 3 }, { n: 4 }]);
    assert.equal(new Set(bulk).size, 3);
    const viaBulk = await q.addBulk([{ name: "request", data: { n: 2 }, opts: REQUEST_JOB_OPTIONS }]);
    assert.deepEqual(await storedJob("same", bulk[0] as string), await storedJob("same", viaBulk[0]?.id as string));
    // BullMQ's wait list: newest at the head, taken from the tail.
    assert.deepEqual((await redis.lrange(queueKeys.key("same", "wait"), 0, -1)).reverse(), [first, viaQueue.id, lean, ...bulk, viaBulk[0]?.id]);
  });

  it("adds jobs a plain BullMQ worker runs once each, with their data, and removes on completion as asked", async () => {
    const q = queue("run");
    const add = jobAdder(q, "request", REQUEST_JOB_OPTIONS);
    const seen: Array<{ id: string; name: string; data: unknown; attempts: number | undefined }> = [];
    const connection = testRedis();
    const w = new Worker(
      queueKeys.name("run"),
      async (job) => {
        seen.push({ id: job.id as string, name: job.name, data: job.data, attempts: job.opts.attempts });
        return { ok: true };
      },
      { connection, prefix: queueKeys.prefix, concurrency: 4 },
    );
    closers.push(async () => {
      await w.close();
      connection.disconnect();
    });
    const ids = [...(await add([{ i: 0 }])), ...(await add([{ i: 1 }, { i: 2 }, null]))];
    await waitFor("the worker to run 4 jobs", () => seen.length >= 4, { timeoutMs: 10_000, describe: () => seen });
    assert.deepEqual(
      seen.map((s) => s.id).sort(),
      [...ids].sort(),
    );
    assert.deepEqual(
      seen.sort((a, b) => Number(a.id) - Number(b.id)).map((s) => s.data),
      [{ i: 0 }, { i: 1 }, { i: 2 }, null],
    );
    assert.ok(seen.every((s) => s.name === "request" && s.attempts === 0));
    await waitFor("the completed jobs to be removed (removeOnComplete)", async () => (await redis.exists(...ids.map((id) => queueKeys.key("run", id)))) === 0);
    assert.deepEqual(await q.getJobCounts("wait", "active", "completed", "failed"), { wait: 0, active: 0, completed: 0, failed: 0 });
  });

  it("takes options the lean way cannot (a delay, a priority) through queue.add", async () => {
    const q = queue("special");
    const delayed = await jobAdder(q, "request", { ...REQUEST_JOB_OPTIONS, delay: 60_000 })([{ later: true }]);
    const prioritized = await jobAdder(q, "request", { ...REQUEST_JOB_OPTIONS, priority: 3 })([{ urgent: true }]);
    assert.equal(await q.getJobState(delayed[0] as string), "delayed");
    assert.equal(await q.getJobState(prioritized[0] as string), "prioritized");
    assert.deepEqual(await q.getJobCounts("wait", "delayed", "prioritized"), { wait: 0, delayed: 1, prioritized: 1 });
  });
});
