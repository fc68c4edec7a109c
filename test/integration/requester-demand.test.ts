/**
 * The autoscaler's demand in requests, on the real Redis: requesters write the
 * requests they wait on next to the deployment's queue, however many of them
 * share a batch job, and the controller's queue read sums the live counts. A
 * read never writes: dead requesters' counts are the leader's to delete.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { RequestClient } from "../../src/client/request-client.js";
import { FlotillaError } from "../../src/errors.js";
import { applyDeployments } from "../../src/client/deployment-store.js";
import { Controller } from "../../src/controller/controller.js";
import { parseControllerOptions } from "../../src/controller/controller-options.js";
import { QueueJanitor } from "../../src/controller/queue-janitor.js";
import { Queue } from "../../src/queue/bullmq.js";
import { QueueKeys } from "../../src/queue/queue-keys.js";
import { queueDepths, type QueueDepth } from "../../src/queue/queue-depths.js";
import { deleteStale, requestersKey, sumRequested } from "../../src/queue/requester-demand.js";
import { Keys } from "../../src/shared/keys.js";
import { createLogger } from "../../src/shared/logger.js";
import { parseDeploymentSpec } from "../../src/spec/deployment-spec.js";
import { cleanupNamespace, REDIS_URL, testNamespace, testRedis } from "../helpers/redis.js";
import { echoReplica, startReplica, stopReplica } from "../helpers/echo-replica.js";
import { waitFor } from "../helpers/wait.js";

process.env.FLOTILLA_LOG_LEVEL ??= "warn";

describe("requester demand", () => {
  const namespace = testNamespace("demand");
  const keys = new Keys(namespace);
  const queueKeys = new QueueKeys(namespace);
  const redis = testRedis();
  const client = new RequestClient({ redisUrl: REDIS_URL, namespace });
  const depth = async (deployment: string) => (await queueDepths(redis, keys, [deployment])).get(deployment);

  after(async () => {
    await client.close();
    redis.disconnect();
    await cleanupNamespace(namespace);
  });

  describe("with a fast deployment whose requests share batch jobs", () => {
    const runner = echoReplica(namespace, "echo-demand");
    /** Paused, the queue holds jobs back from the replica, so requests stay waiting for as long as the test looks. */
    const queue = new Queue(queueKeys.name("echo"), { connection: redis, prefix: queueKeys.prefix });

    before(async () => {
      await startReplica(runner);
    });

    after(async () => {
      await queue.close();
      await stopReplica(runner);
    });

    it("counts every waiting request, though 100 of them wait in a few batch jobs, and drops them once answered", async () => {
      // The client batches once replies have shown it that echo is fast: each round's answers teach it.
      await waitFor(
        "100 waiting requests to share a few batch jobs and be counted one by one",
        async () => {
          await queue.pause();
          const calls = Promise.allSettled(Array.from({ length: 100 }, (_, i) => client.submit("echo", { kind: "call", payload: i })));
          let seen: QueueDepth;
          try {
            seen = await waitFor("the 100 requests to be counted", async () => {
              const d = await depth("echo");
              return d?.requested === 100 ? d : undefined;
            });
          } finally {
            await queue.resume();
          }
          const outcomes = await calls;
          assert.ok(outcomes.every((o) => o.status === "fulfilled"), "every request is answered once the queue resumes");
          await waitFor("the count to go back to 0", async () => (await depth("echo"))?.requested === 0);
          assert.equal(await redis.hexists(requestersKey(keys, "echo"), client.id), 0, "a count of 0 leaves no field behind");
          return seen.waiting <= 4;
        },
        { timeoutMs: 30_000, intervalMs: 10 },
      );
    });
  });

  it("drops requests that time out from the count", async () => {
    const calls = Promise.allSettled(Array.from({ length: 5 }, (_, i) => client.submit("unserved", { kind: "call", payload: i }, { timeoutMs: 1500 })));
    await waitFor("the 5 requests to be counted", async () => (await depth("unserved"))?.requested === 5);
    const outcomes = await calls;
    assert.ok(outcomes.every((o) => o.status === "rejected" && o.reason instanceof FlotillaError && o.reason.code === "TIMEOUT"));
    await waitFor("the count to go back to 0", async () => (await depth("unserved"))?.requested === 0);
  });

  it("ignores the count of a requester that stopped writing it and leaves it in place; the leader's pass removes it and keeps a live one", async () => {
    const key = requestersKey(keys, "ghosts");
    const nowS = Number((await redis.time())[0]);
    await redis.hset(key, "dead-router", `7:${nowS - 60}`, "live-router", `3:${nowS}`, "garbled", "x");
    assert.equal((await depth("ghosts"))?.requested, 3);
    // A command sent after the read, on the read's connection, runs after anything the read would have sent.
    assert.deepEqual((await redis.hkeys(key)).sort(), ["dead-router", "garbled", "live-router"], "reading the depth wrote nothing");
    const janitor = new QueueJanitor(redis, keys, createLogger("test-janitor"));
    try {
      await janitor.forgetDeadRequesters(await queueDepths(redis, keys, ["ghosts", "nothing-here"]));
    } finally {
      await janitor.close();
    }
    assert.deepEqual(await redis.hkeys(key), ["live-router"]);
    assert.equal((await depth("ghosts"))?.requested, 3);
  });

  it("the leader controller deletes a dead requester's count of a deployment on its own, with no status read", async () => {
    await applyDeployments(redis, keys, [parseDeploymentSpec({ name: "haunted", import: "echo.ts" })]);
    const key = requestersKey(keys, "haunted");
    const nowS = Number((await redis.time())[0]);
    await redis.hset(key, "dead-router", `9:${nowS - 60}`, "live-router", `2:${nowS}`);
    const controller = new Controller(parseControllerOptions({ id: "c-demand", redisUrl: REDIS_URL, namespace, tickMs: 100 }), createLogger("test-controller"));
    await controller.start();
    try {
      await waitFor("the leader to delete the dead count", async () => (await redis.hkeys(key)).join(",") === "live-router", { timeoutMs: 10_000 });
    } finally {
      await controller.stop();
    }
  });

  it("keeps a stale count whose requester wrote it again after it was read", async () => {
    const key = requestersKey(keys, "revived");
    const nowS = Number((await redis.time())[0]);
    await redis.hset(key, "slow-router", `4:${nowS - 60}`, "dead-router", `2:${nowS - 60}`);
    const { requested, stale } = sumRequested(await redis.hgetall(key), nowS);
    assert.equal(requested, 0);
    assert.deepEqual(stale.map(([field]) => field).sort(), ["dead-router", "slow-router"]);
    // Between the read and the delete, the slow requester writes its count again.
    await redis.hset(key, "slow-router", `5:${nowS}`);
    assert.equal(await deleteStale(redis, keys, "revived", stale), 1);
    assert.deepEqual(await redis.hgetall(key), { "slow-router": `5:${nowS}` });
    assert.equal((await depth("revived"))?.requested, 5);
  });

  it("removes a closing requester's count at once", async () => {
    const other = new RequestClient({ redisUrl: REDIS_URL, namespace });
    const calls = Promise.allSettled(Array.from({ length: 3 }, (_, i) => other.submit("nobody", { kind: "call", payload: i }, { timeoutMs: 30_000 })));
    try {
      await waitFor("the 3 requests to be counted", async () => (await depth("nobody"))?.requested === 3);
    } finally {
      await other.close();
    }
    assert.ok((await calls).every((o) => o.status === "rejected"), "closing rejects what it still waited on");
    assert.equal((await depth("nobody"))?.requested, 0);
  });
});
