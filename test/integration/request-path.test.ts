/**
 * The request path in one process on the real Redis: a RequestClient and a
 * ReplicaRunner (the replica's effects and state machine) on a deployment queue.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { RequestClient } from "../../src/client/request-client.js";
import { FlotillaError } from "../../src/errors.js";
import { QueueKeys } from "../../src/queue/queue-keys.js";
import { cleanupNamespace, REDIS_URL, testNamespace, testRedis } from "../helpers/redis.js";
import { echoReplica, startReplica, stopReplica } from "../helpers/echo-replica.js";
import { waitFor } from "../helpers/wait.js";

process.env.FLOTILLA_LOG_LEVEL ??= "warn";

describe("request path", () => {
  const namespace = testNamespace("reqpath");
  const queueKeys = new QueueKeys(namespace);
  const redis = testRedis();
  const client = new RequestClient({ redisUrl: REDIS_URL, namespace });
  const runner = echoReplica(namespace, "echo-test");

  before(async () => {
    await startReplica(runner);
  });

  after(async () => {
    await stopReplica(runner);
    await client.close();
    redis.disconnect();
    await cleanupNamespace(namespace);
  });

  it("answers an HTTP job and a call job on the requester's own reply list", async () => {
    const http = await client.submit("echo", { kind: "http", http: { method: "POST", path: "/echo/x", subPath: "/x", query: {}, headers: {}, body: '{"a":1}' } });
    assert.equal(http.status, 200);
    assert.equal(http.replica, "echo-test");
    assert.equal(http.version, "1");
    assert.deepEqual(JSON.parse(http.body).body, { a: 1 });
    const call = await client.submit("echo", { kind: "call", payload: [1, 2] });
    assert.deepEqual((call.value as { payload: unknown }).payload, [1, 2]);
    assert.equal(await redis.llen(queueKeys.key("echo", "wait")), 0);
    assert.equal(await redis.exists(queueKeys.key("echo", "completed")), 0, "completed jobs are not kept");
  });

  it("puts requests that arrive together for a fast deployment into batch jobs, and answers each on its own", async () => {
    const idKey = queueKeys.key("echo", "id");
    const warnings: string[] = [];
    const onWarning = (w: Error): void => void warnings.push(`${w.name}: ${w.message}`);
    process.on("warning", onWarning);
    let round = 0;
    // The client learns from the replies' handler times that echo is fast; on a busy machine that can take a few rounds.
    await waitFor(
      "50 concurrent requests to share fewer than 50 jobs",
      async () => {
        const before = Number(await redis.get(idKey));
        const base = round++ * 100;
        const replies = await Promise.all(Array.from({ length: 50 }, (_, i) => client.submit("echo", { kind: "call", payload: { n: base + i } })));
        replies.forEach((reply, i) => assert.deepEqual((reply.value as { payload: unknown }).payload, { n: base + i }, `request ${i} got its own answer`));
        return Number(await redis.get(idKey)) - before < 50;
      },
      { timeoutMs: 15_000, intervalMs: 10 },
    );
    await new Promise((resolve) => setImmediate(resolve)); // warnings are emitted on a later tick
    process.off("warning", onWarning);
    // A replica's stderr is its host's log: a batch must not print a listener-leak warning per job.
    assert.deepEqual(warnings, []);
  });

  it("gives each request its own job when the deployment has maxQueuedRequests, so the limit counts requests", async () => {
    const idKey = queueKeys.key("echo", "id");
    // The client knows echo is fast by now (the test above): without a limit these 50 would share jobs.
    const before = Number(await redis.get(idKey));
    const replies = await Promise.all(Array.from({ length: 50 }, (_, i) => client.submit("echo", { kind: "call", payload: { m: i } }, { maxQueued: 10_000 })));
    replies.forEach((reply, i) => assert.deepEqual((reply.value as { payload: unknown }).payload, { m: i }));
    assert.equal(Number(await redis.get(idKey)) - before, 50, "one job per request");
  });

  it("times out a request nobody takes and withdraws it from the queue", async () => {
    await assert.rejects(client.submit("nobody", { kind: "call", payload: 1 }, { timeoutMs: 300 }), (err: unknown) => err instanceof FlotillaError && err.code === "TIMEOUT");
    await waitFor("the job to leave the wait list", async () => (await redis.llen(queueKeys.key("nobody", "wait"))) === 0, { timeoutMs: 2000 });
  });

  it("refuses with BACKPRESSURE once maxQueuedRequests wait, without enqueueing", async () => {
    const waiting = [client.submit("idle", { kind: "call", payload: 1 }, { timeoutMs: 2000 }), client.submit("idle", { kind: "call", payload: 2 }, { timeoutMs: 2000 })];
    for (const w of waiting) w.catch(() => undefined);
    await waitFor("two requests waiting", async () => (await redis.llen(queueKeys.key("idle", "wait"))) === 2);
    await assert.rejects(client.submit("idle", { kind: "call", payload: 3 }, { maxQueued: 2 }), (err: unknown) => err instanceof FlotillaError && err.code === "BACKPRESSURE" && err.status === 503);
    assert.equal(await redis.llen(queueKeys.key("idle", "wait")), 2);
    await Promise.allSettled(waiting);
  });

  it("reconfigures in place and keeps answering", async () => {
    runner.actor.send({ type: "RECONFIGURE", userConfig: { x: 1 }, configVersion: "cfg2" });
    await waitFor("the new config version", () => runner.report().configVersion === "cfg2" && runner.report().state === "running");
    const reply = await client.submit("echo", { kind: "call", payload: "still here" });
    assert.equal(reply.status, 200);
  });
});
