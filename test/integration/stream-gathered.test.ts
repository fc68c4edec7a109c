/**
 * A streaming handler called by a client that reads no reply list (a bare
 * BullMQ client, reading return values): the chunks come back gathered, as one
 * array, from a real replica in this process.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Queue } from "bullmq";
import { QueueKeys } from "../../src/queue/queue-keys.js";
import type { Reply } from "../../src/shared/protocol.js";
import { echoReplica, startReplica, stopReplica } from "../helpers/echo-replica.js";
import { runAsPlainClient } from "../helpers/queues.js";
import { cleanupNamespace, testNamespace, testRedis } from "../helpers/redis.js";

process.env.FLOTILLA_LOG_LEVEL ??= "error";

describe("a streamed answer without a reply list", () => {
  const namespace = testNamespace("stream-gathered");
  const queueKeys = new QueueKeys(namespace);
  const redis = testRedis();
  const runner = echoReplica(namespace, "st-1", { deployment: "st", importRef: "streamer.ts" });
  const queue = new Queue(queueKeys.name("st"), { connection: redis, prefix: queueKeys.prefix });

  before(async () => {
    await startReplica(runner);
  });

  after(async () => {
    await queue.close();
    await stopReplica(runner);
    redis.disconnect();
    await cleanupNamespace(namespace);
  });

  async function run(data: unknown): Promise<Reply> {
    return (await runAsPlainClient(queue, data)) as Reply;
  }

  it("answers a call job with the array of yielded values", async () => {
    const reply = await run({ kind: "call", payload: { n: 3, ms: 0, kind: "json" } });
    assert.deepEqual((reply.value as Array<{ i: number }>).map((v) => v.i), [0, 1, 2]);
  });

  it("answers an http job with the chunks as a JSON array", async () => {
    const reply = await run({ kind: "http", http: { method: "GET", path: "/st", query: { n: "2", ms: "0" } } });
    assert.equal(reply.status, 200);
    assert.equal((JSON.parse(reply.body) as string[]).length, 2);
  });
});
