/**
 * Async requests' records on the real Redis: submit puts a record and a job of
 * its own; a replica's start, progress and finish move the record; a cancel
 * withdraws a queued job and wins over a finish that comes after it; results
 * expire with their TTL; malformed and unknown ids are NOT_FOUND.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { Worker } from "bullmq";
import { AsyncRequestClient } from "../../src/client/async-request-client.js";
import { QueueJanitor } from "../../src/controller/queue-janitor.js";
import { createLogger } from "../../src/shared/logger.js";
import { FlotillaError } from "../../src/errors.js";
import { AsyncRecords } from "../../src/queue/async-requests.js";
import { DeploymentQueue } from "../../src/queue/deployment-queue.js";
import { QueueKeys } from "../../src/queue/queue-keys.js";
import { Keys } from "../../src/shared/keys.js";
import { cleanupNamespace, testNamespace, testRedis } from "../helpers/redis.js";
import { waitFor } from "../helpers/wait.js";

const notFound = (err: unknown): boolean => err instanceof FlotillaError && err.code === "NOT_FOUND";

describe("async request records", () => {
  const namespace = testNamespace("async-records");
  const keys = new Keys(namespace);
  const redis = testRedis();
  const client = new AsyncRequestClient(redis, keys);
  const records = new AsyncRecords(redis, keys);
  const queue = new DeploymentQueue(redis, namespace, "d");
  const wait = new QueueKeys(namespace).of("d").wait;

  after(async () => {
    await client.close();
    await queue.close();
    redis.disconnect();
    await cleanupNamespace(namespace);
  });

  it("submit stores a queued record and a job of its own carrying the id", async () => {
    const id = await client.submit("d", { kind: "call", payload: { n: 1 } }, { resultTtlS: 60 });
    const view = await client.get(id);
    assert.equal(view.status, "queued");
    assert.equal(view.deployment, "d");
    assert.equal(view.startedAt, null);
    assert.equal(view.result, null);
    assert.ok(Math.abs(view.createdAt - Date.now()) < 5000);
    const jobs = await queue.unanswered();
    const job = jobs.find((j) => (j.data as { asyncId?: string }).asyncId === id);
    assert.ok(job, "the job carries the async id");
    assert.deepEqual((job.data as { payload: unknown }).payload, { n: 1 });
    assert.equal(await redis.ttl(keys.asyncRequest(id)), -1, "no TTL before it finishes");
    await client.cancel(id);
  });

  it("moves through running (with progress) to succeeded, then expires after its TTL", async () => {
    const id = await client.submit("d", { kind: "call", payload: null }, { resultTtlS: 1 });
    assert.equal(await records.start(id), "running");
    assert.equal(await records.progress(id, JSON.stringify({ done: 2 })), true);
    const running = await client.get(id);
    assert.equal(running.status, "running");
    assert.deepEqual(running.progress, { done: 2 });
    assert.ok(running.startedAt !== null);
    const result = { status: 200, headers: {}, body: "", value: 42 };
    assert.equal(await records.finish(id, "d", "succeeded", result), "running");
    const done = await client.get(id);
    assert.equal(done.status, "succeeded");
    assert.deepEqual(done.result, result);
    assert.ok(done.finishedAt !== null && done.finishedAt >= (done.startedAt ?? 0));
    assert.equal(await records.progress(id, "1"), false, "no progress once finished");
    assert.equal(await records.finish(id, "d", "failed", null), "succeeded", "a second finish changes nothing");
    await waitFor("the record to expire", async () => (await redis.exists(keys.asyncRequest(id))) === 0, { timeoutMs: 5000 });
    await assert.rejects(client.get(id), notFound);
  });

  it("a cancelled queued request is withdrawn from the queue and never starts", async () => {
    const id = await client.submit("d", { kind: "call", payload: null }, { resultTtlS: 60 });
    const before = await redis.lrange(wait, 0, -1);
    const view = await client.cancel(id);
    assert.equal(view.status, "cancelled");
    assert.ok(view.finishedAt !== null);
    const afterIds = await redis.lrange(wait, 0, -1);
    assert.equal(afterIds.length, before.length - 1, "its job left the wait list");
    assert.equal(await records.start(id), "cancelled", "a replica that took it anyway does not run it");
    assert.ok((await redis.ttl(keys.asyncRequest(id))) > 0, "a cancelled record expires too");
  });

  it("a cancel of a running request is published to replicas and wins over the handler's answer", async () => {
    const id = await client.submit("d", { kind: "call", payload: null }, { resultTtlS: 60 });
    await records.start(id);
    const sub = testRedis();
    const heard: string[] = [];
    sub.on("message", (_c: string, m: string) => heard.push(m));
    await sub.subscribe(keys.asyncCancels);
    try {
      assert.equal((await client.cancel(id)).status, "cancelled");
      await waitFor("the cancel message", () => heard.includes(id));
      assert.equal(await records.finish(id, "d", "failed", { status: 500, headers: {}, body: "aborted" }), "cancelled");
      const view = await client.get(id);
      assert.equal(view.status, "cancelled");
      assert.equal(view.result, null);
      assert.equal((await client.cancel(id)).status, "cancelled", "cancelling again changes nothing");
    } finally {
      sub.disconnect();
    }
  });

  it("wait returns on a change, or after the wait when nothing changes", async () => {
    const id = await client.submit("d", { kind: "call", payload: null }, { resultTtlS: 60 });
    const t0 = Date.now();
    const unchanged = await client.wait(id, 0.4);
    assert.equal(unchanged.status, "queued");
    assert.ok(Date.now() - t0 >= 350, "waited for the whole wait");
    const t1 = Date.now();
    setTimeout(() => void records.start(id), 300);
    const changed = await client.wait(id, 10);
    assert.equal(changed.status, "running");
    assert.ok(Date.now() - t1 < 5000, "returned on the change, not at the end of the wait");
    await client.cancel(id);
  });

  it("answers NOT_FOUND for malformed and unknown ids", async () => {
    await assert.rejects(client.get("../../etc"), notFound);
    await assert.rejects(client.get("6f1c3a1e-3c1b-4b6a-9d5e-2b7e4c1a0f00"), notFound);
    await assert.rejects(client.cancel("nope"), notFound);
  });

  it("refuses with BACKPRESSURE when maxQueued requests wait, leaving no record", async () => {
    const waiting = await redis.llen(wait);
    await assert.rejects(client.submit("d", { kind: "call", payload: null }, { resultTtlS: 60, maxQueued: Math.max(1, waiting) }), (err: unknown) => err instanceof FlotillaError && err.code === "BACKPRESSURE");
  });

  it("a request whose job failed for good (its replicas kept dying) ends failed with REPLICA_CRASHED", async () => {
    const queueKeys = new QueueKeys(namespace);
    const id = await client.submit("crashy", { kind: "call", payload: null }, { resultTtlS: 60 });
    const workerRedis = testRedis();
    const worker = new Worker(queueKeys.name("crashy"), async () => {
      await records.start(id);
      throw new Error("the replica running it ended");
    }, { connection: workerRedis, prefix: queueKeys.prefix });
    const crashy = new DeploymentQueue(redis, namespace, "crashy");
    try {
      await waitFor("the job to fail", async () => (await crashy.failed(10)).length === 1);
    } finally {
      await worker.close();
      workerRedis.disconnect();
    }
    const janitor = new QueueJanitor(redis, keys, createLogger("test-janitor"));
    await janitor.answerFailed("crashy");
    await janitor.close();
    await crashy.close();
    const view = await client.get(id);
    assert.equal(view.status, "failed");
    assert.equal(view.result?.status, 502);
    assert.equal(view.result?.error?.code, "REPLICA_CRASHED");
    assert.ok((await redis.ttl(keys.asyncRequest(id))) > 0, "its result expires like any other");
  });

  it("counts requests by the status they reached", async () => {
    const counts = (await records.counts()).get("d");
    assert.ok(counts);
    assert.ok(counts.queued >= 5);
    assert.ok(counts.succeeded >= 1);
    assert.ok(counts.cancelled >= 3);
  });
});
