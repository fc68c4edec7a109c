/**
 * The autoscaler's demand in requests, on the real Redis: requesters write the
 * requests they wait on next to the deployment's queue, however many of them
 * share a batch job, and the controller's queue read sums the live counts.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { RequestClient } from "../../src/client/request-client.js";
import { FlotillaError } from "../../src/errors.js";
import { Keys } from "../../src/shared/keys.js";
import { queueDepths } from "../../src/shared/queue-ops.js";
import { requestersKey } from "../../src/shared/requester-demand.js";
import { cleanupNamespace, REDIS_URL, testNamespace, testRedis } from "../helpers/redis.js";
import { echoReplica } from "../helpers/echo-replica.js";
import { waitFor } from "../helpers/wait.js";

process.env.FLOTILLA_LOG_LEVEL ??= "warn";

describe("requester demand", () => {
  const namespace = testNamespace("demand");
  const keys = new Keys(namespace);
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

    before(async () => {
      runner.actor.start();
      await waitFor("the replica to run", () => runner.report().state === "running");
      // The client learns from the replies that echo is fast, and from then on batches requests that arrive together.
      const idKey = keys.queueKey("echo", "id");
      await waitFor(
        "50 concurrent requests to share fewer than 50 jobs",
        async () => {
          const jobsBefore = Number(await redis.get(idKey));
          await Promise.all(Array.from({ length: 50 }, (_, i) => client.submit("echo", { kind: "call", payload: i })));
          return Number(await redis.get(idKey)) - jobsBefore < 50;
        },
        { timeoutMs: 15_000, intervalMs: 10 },
      );
      runner.actor.send({ type: "DRAIN" });
      await waitFor("the replica to stop", () => runner.report().state === "stopped");
      await runner.closeConnections();
    });

    it("counts every waiting request, though 100 of them wait in a few batch jobs, and drops them when they time out", async () => {
      const calls = Array.from({ length: 100 }, (_, i) => client.submit("echo", { kind: "call", payload: i }, { timeoutMs: 3000 }));
      const seen = await waitFor("the 100 requests to be counted", async () => {
        const d = await depth("echo");
        return d?.requested === 100 ? d : undefined;
      });
      assert.ok(seen.waiting <= 4, `the 100 requests wait in ${seen.waiting} jobs`);

      const outcomes = await Promise.allSettled(calls);
      assert.ok(
        outcomes.every((o) => o.status === "rejected" && o.reason instanceof FlotillaError && o.reason.code === "TIMEOUT"),
        "nobody answered them",
      );
      await waitFor("the count to go back to 0", async () => (await depth("echo"))?.requested === 0);
      assert.equal(await redis.hexists(requestersKey(keys, "echo"), client.id), 0, "a count of 0 leaves no field behind");
    });
  });

  it("ignores and removes the count of a requester that stopped writing it, and keeps a live one", async () => {
    const key = requestersKey(keys, "ghosts");
    const nowS = Number((await redis.time())[0]);
    await redis.hset(key, "dead-router", `7:${nowS - 60}`, "live-router", `3:${nowS}`, "garbled", "x");
    assert.equal((await depth("ghosts"))?.requested, 3);
    await waitFor("the dead and garbled counts to be removed", async () => (await redis.hkeys(key)).join(",") === "live-router");
  });

  it("removes a closing requester's count at once", async () => {
    const other = new RequestClient({ redisUrl: REDIS_URL, namespace });
    const calls = Promise.allSettled(Array.from({ length: 3 }, (_, i) => other.submit("nobody", { kind: "call", payload: i }, { timeoutMs: 30_000 })));
    await waitFor("the 3 requests to be counted", async () => (await depth("nobody"))?.requested === 3);
    await other.close();
    assert.ok((await calls).every((o) => o.status === "rejected"), "closing rejects what it still waited on");
    assert.equal((await depth("nobody"))?.requested, 0);
  });
});
