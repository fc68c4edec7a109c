/**
 * A request that times out before any replica took it is withdrawn: its job
 * goes entirely (hash, place in the wait list, anything BullMQ keeps of it),
 * whether it had a job of its own or shared a batch job with others.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { Queue } from "bullmq";
import { RequestClient } from "../../src/client/request-client.js";
import { FlotillaError } from "../../src/errors.js";
import { QueueKeys } from "../../src/queue/queue-keys.js";
import { echoReplica, stopReplica } from "../helpers/echo-replica.js";
import { cleanupNamespace, REDIS_URL, testNamespace, testRedis } from "../helpers/redis.js";
import { waitFor } from "../helpers/wait.js";

process.env.FLOTILLA_LOG_LEVEL ??= "warn";

describe("withdrawing timed-out requests", () => {
  const namespace = testNamespace("withdraw");
  const queueKeys = new QueueKeys(namespace);
  const redis = testRedis();
  const client = new RequestClient({ redisUrl: REDIS_URL, namespace });

  after(async () => {
    await client.close();
    redis.disconnect();
    await cleanupNamespace(namespace);
  });

  /** Every key of the namespace (SCAN) that belongs to one job of the deployment's queue: `<queue>:<id>` or `<queue>:<id>:*`. */
  async function jobKeys(deployment: string): Promise<string[]> {
    const base = queueKeys.key(deployment, "");
    const found: string[] = [];
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${namespace}:*`, "COUNT", 1000);
      cursor = next;
      found.push(...keys.filter((k) => k.startsWith(base) && /^\d+(:|$)/.test(k.slice(base.length))));
    } while (cursor !== "0");
    return found.sort();
  }

  /** Job ids still listed in the deployment's waiting states. */
  async function listed(deployment: string): Promise<string[]> {
    const k = queueKeys.of(deployment);
    const [wait, prioritized, delayed] = await Promise.all([redis.lrange(k.wait, 0, -1), redis.zrange(k.prioritized, "0", "-1"), redis.zrange(k.delayed, "0", "-1")]);
    return [...wait, ...prioritized, ...delayed];
  }

  const timeouts = (outcomes: PromiseSettledResult<unknown>[]): boolean =>
    outcomes.every((o) => o.status === "rejected" && o.reason instanceof FlotillaError && o.reason.code === "TIMEOUT");

  it("leaves nothing of a job of its own in Redis", async () => {
    const outcomes = await Promise.allSettled(Array.from({ length: 5 }, (_, i) => client.submit("nobody", { kind: "call", payload: i }, { timeoutMs: 300 })));
    assert.ok(timeouts(outcomes));
    assert.equal(Number(await redis.get(queueKeys.of("nobody").id)), 5, "five jobs were added");
    await waitFor("every job to be gone", async () => (await jobKeys("nobody")).length === 0 && (await listed("nobody")).length === 0, {
      timeoutMs: 3000,
      describe: async () => ({ keys: await jobKeys("nobody"), listed: await listed("nobody") }),
    });
  });

  it("leaves nothing of a batch job once all its requests timed out", async () => {
    const runner = echoReplica(namespace, "echo-withdraw");
    runner.actor.start();
    const queue = new Queue(queueKeys.name("echo"), { connection: redis, prefix: queueKeys.prefix });
    try {
      await waitFor("the replica to run", () => runner.report().state === "running");
      // The client batches once replies have shown it that echo is fast; on a busy machine that takes a few
      // rounds, and a slow turn can make it send one job per request again: so warm up, pause, and try again
      // until the paused requests shared batch jobs. Every attempt's requests time out, and all must leave nothing.
      let added = 0;
      await waitFor("100 paused requests to share batch jobs", async () => {
        await queue.resume();
        await waitFor("concurrent requests to share batch jobs", async () => {
          const before = Number(await redis.get(queueKeys.of("echo").id));
          await Promise.all(Array.from({ length: 20 }, (_, i) => client.submit("echo", { kind: "call", payload: i })));
          return Number(await redis.get(queueKeys.of("echo").id)) - before < 20;
        }, { timeoutMs: 15_000, intervalMs: 10 });
        // Paused, the queue keeps its jobs from the replica: these requests can only time out.
        await queue.pause();
        const before = Number(await redis.get(queueKeys.of("echo").id));
        const outcomes = await Promise.allSettled(Array.from({ length: 100 }, (_, i) => client.submit("echo", { kind: "call", payload: i }, { timeoutMs: 500 })));
        assert.ok(timeouts(outcomes));
        added = Number(await redis.get(queueKeys.of("echo").id)) - before;
        return added > 0 && added < 100;
      }, { timeoutMs: 60_000, intervalMs: 10, describe: () => ({ jobsForTheLast100Requests: added }) });
      await waitFor("every batch job to be gone", async () => (await jobKeys("echo")).length === 0 && (await listed("echo")).length === 0, {
        timeoutMs: 3000,
        describe: async () => ({ keys: await jobKeys("echo"), listed: await listed("echo") }),
      });
    } finally {
      await queue.resume();
      await queue.close();
      await stopReplica(runner);
    }
  });
});
