/**
 * The worker tuning relies on BullMQ internals. The BullMQ installed has them
 * all; a worker that lacks one is left as plain BullMQ, still runs its jobs,
 * and the fallback is logged once per process, as an error.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { pino } from "pino";
import { Worker } from "../../src/queue/bullmq.js";
import { missingTuningInternals, tuneIdleWorker } from "../../src/queue/tuned-worker.js";
import { queueFixture } from "../helpers/queues.js";
import { testRedis } from "../helpers/redis.js";
import { waitFor } from "../helpers/wait.js";

describe("worker tuning fallback", () => {
  const { queueKeys, closers, queue } = queueFixture("fallback");
  const lines: Array<{ level: number; msg: string; missing?: string[]; feature?: string }> = [];
  const log = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line)) });

  function worker(name: string, processor: () => Promise<unknown>): Worker {
    const connection = testRedis();
    const w = new Worker(queueKeys.name(name), processor, { connection, prefix: queueKeys.prefix, autorun: false });
    closers.push(async () => {
      await w.close(true);
      connection.disconnect();
    });
    return w;
  }

  it("finds every internal it relies on in the installed BullMQ, and tunes without a word", () => {
    const w = worker("complete", async () => "ok");
    assert.deepEqual(missingTuningInternals(w), []);
    assert.equal(tuneIdleWorker(w, () => true, queueKeys.of("complete"), log), true);
    const backend = (w as unknown as { backend: object }).backend;
    assert.deepEqual(["waitForJob", "moveToActive"].filter((m) => Object.hasOwn(backend, m)), ["waitForJob", "moveToActive"], "tuned in place");
    assert.deepEqual(lines, []);
  });

  it("leaves a worker missing `_getNextJob` as plain BullMQ, which runs its jobs, and says so once, loudly", async () => {
    const ran: string[] = [];
    const workers = ["lacking-a", "lacking-b"].map((name) => {
      const w = worker(name, async () => void ran.push(name));
      (w as unknown as { _getNextJob: undefined })._getNextJob = undefined;
      assert.deepEqual(missingTuningInternals(w), ["_getNextJob"]);
      assert.equal(tuneIdleWorker(w, () => true, queueKeys.of(name), log), false, "not tuned");
      const backend = (w as unknown as { backend: object }).backend;
      assert.deepEqual(["waitForJob", "moveToActive"].filter((m) => Object.hasOwn(backend, m)), [], "BullMQ's own methods left in place");
      return { name, w };
    });
    assert.equal(lines.length, 1, `one log line for two workers: ${JSON.stringify(lines)}`);
    assert.equal(lines[0]?.level, 50, "logged as an error");
    assert.deepEqual(lines[0]?.missing, ["_getNextJob"]);
    assert.match(lines[0]?.msg ?? "", /falls back to plain BullMQ/);

    // Plain BullMQ's own fetch is back in place of the missing method.
    for (const { w } of workers) delete (w as unknown as { _getNextJob?: unknown })._getNextJob;
    for (const { name, w } of workers) {
      void w.run();
      await queue(name).add("r", {});
    }
    await waitFor("both plain workers to run their job", () => ran.length === 2, { timeoutMs: 10_000 });
  });
});
