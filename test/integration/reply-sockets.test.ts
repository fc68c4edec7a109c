/**
 * Reply sockets on the real Redis (src/queue/reply-sockets.ts): a replica
 * answers a requester over the requester's socket, and the job still
 * completes and leaves nothing behind; a busy requester's requests go as
 * batch jobs and their answers over the socket too; a requester the replica
 * cannot reach gets them from its list, and so does one whose replica is
 * stopping; a connection that does not open with the secret is refused and
 * cannot answer a request.
 */
import assert from "node:assert/strict";
import net from "node:net";
import { describe, it } from "node:test";
import { RequestClient } from "../../src/client/request-client.js";
import { Queue } from "../../src/queue/bullmq.js";
import { replySocketKey } from "../../src/shared/keys.js";
import { echoReplica, startReplica, stopReplica } from "../helpers/echo-replica.js";
import { freePort } from "../helpers/private-redis.js";
import { queueFixture } from "../helpers/queues.js";
import { REDIS_URL } from "../helpers/redis.js";
import { waitFor } from "../helpers/wait.js";

process.env.FLOTILLA_LOG_LEVEL ??= "warn";

describe("reply sockets", () => {
  const { namespace, keys, queueKeys, redis, closers } = queueFixture("rsock");

  async function replica(deployment: string, importRef = "echo.ts"): Promise<void> {
    const runner = echoReplica(namespace, `r-${deployment}`, { deployment, importRef });
    closers.push(() => stopReplica(runner, `the replica of ${deployment}`));
    await startReplica(runner, `the replica of ${deployment}`);
  }

  function client(options: { replySocket?: boolean } = {}): RequestClient {
    const c = new RequestClient({ redisUrl: REDIS_URL, namespace, ...options });
    closers.push(() => c.close());
    return c;
  }

  async function call(c: RequestClient, deployment: string, payload: unknown): Promise<void> {
    const reply = await c.submit(deployment, { kind: "call", payload });
    assert.deepEqual((reply.value as { payload: unknown }).payload, payload);
  }

  /** Sends lone requests (`send`) until one is answered over the socket (the replica connects on its first answer to the requester). */
  async function untilSocket(c: RequestClient, send: () => Promise<void>): Promise<void> {
    const start = c.repliesBy.socket;
    await waitFor("a lone request answered over the reply socket", async () => {
      await send();
      return c.repliesBy.socket > start;
    }, { describe: () => c.repliesBy });
  }

  /** Jobs `first`.. (`count` of them) are completed and removed, no lock or active entry is left, and nothing went to `c`'s reply list. */
  async function leftNothing(deployment: string, first: number, count: number, c: RequestClient): Promise<void> {
    const ids = Array.from({ length: count }, (_, i) => String(first + i));
    await waitFor("every job to be completed and removed", async () => (await redis.exists(...ids.map((id) => queueKeys.key(deployment, id)))) === 0);
    assert.equal(await redis.llen(queueKeys.key(deployment, "active")), 0);
    assert.equal(await redis.exists(...ids.map((id) => queueKeys.key(deployment, `${id}:lock`))), 0, "no lock left");
    assert.equal(await redis.exists(keys.replies(c.id)), 0, "nothing was pushed to the reply list");
  }

  it("answers lone requests over the requester's socket, and their jobs complete and leave nothing behind", async () => {
    const deployment = "direct";
    await replica(deployment);
    const c = client();
    await c.socketReady();
    assert.ok(await redis.get(replySocketKey(keys.replies(c.id))), "the requester registered its socket beside its reply list");
    let n = 0;
    await untilSocket(c, () => call(c, deployment, { warm: n++ }));
    const before = { ...c.repliesBy };
    const idKey = queueKeys.key(deployment, "id");
    const first = Number(await redis.get(idKey)) + 1;
    for (let n = 0; n < 10; n++) await call(c, deployment, { n });
    assert.equal(c.repliesBy.socket - before.socket, 10, `all ten over the socket (${JSON.stringify(c.repliesBy)})`);
    assert.equal(c.repliesBy.list, before.list, "none from the list");
    const last = Number(await redis.get(idKey));
    assert.equal(last - first + 1, 10, "each request was a job in the queue");
    await leftNothing(deployment, first, 10, c);
  });

  it("answers a busy requester's batch jobs over its socket too, and they complete and leave nothing behind", async () => {
    const deployment = "busy";
    await replica(deployment);
    const c = client();
    let n = 0;
    // Lone requests first: the requester learns the deployment is fast (so it batches) and the replica connects.
    await untilSocket(c, () => call(c, deployment, { warm: n++ }));
    for (let i = 0; i < 5; i++) await call(c, deployment, { warm: n++ });
    const before = { ...c.repliesBy };
    const idKey = queueKeys.key(deployment, "id");
    const first = Number(await redis.get(idKey)) + 1;
    // 40 at once: more than 8 waiting, so they go through the queue, those of one turn in one batch job.
    await Promise.all(Array.from({ length: 40 }, (_, i) => call(c, deployment, { burst: i })));
    assert.equal(c.repliesBy.socket - before.socket, 40, `all 40 answered over the socket (${JSON.stringify(c.repliesBy)})`);
    assert.equal(c.repliesBy.list, before.list, "none from the list");
    const last = Number(await redis.get(idKey));
    assert.ok(last - first + 1 < 40, `batched: ${last - first + 1} jobs carried the 40 requests`);
    await leftNothing(deployment, first, last - first + 1, c);
  });

  it("answers on the list the requests a stopping replica still runs, with their jobs' completions", async () => {
    const deployment = "stopping";
    const runner = echoReplica(namespace, "r-stopping", { deployment, importRef: "slow.ts" });
    closers.push(() => stopReplica(runner, "the stopping replica"));
    await startReplica(runner, "the stopping replica");
    const c = client();
    const slow = async (ms: number): Promise<void> => {
      const reply = await c.submit(deployment, { kind: "call", payload: { ms } });
      assert.equal((reply.value as { slept: number }).slept, ms);
    };
    await untilSocket(c, () => slow(1));
    const before = { ...c.repliesBy };
    const answered = Promise.all(Array.from({ length: 3 }, () => slow(1_500)));
    await waitFor("the three requests to run", () => runner.inflightCount === 3, { describe: () => runner.inflightCount });
    runner.actor.send({ type: "DRAIN" });
    await answered;
    assert.equal(c.repliesBy.list - before.list, 3, `all three answered on the list (${JSON.stringify(c.repliesBy)})`);
    assert.equal(c.repliesBy.socket, before.socket, "none over the socket");
    await waitFor("the replica to stop", () => runner.report().state === "stopped");
  });

  it("answers on the list when the registered address does not take connections", async () => {
    const deployment = "unreachable";
    await replica(deployment);
    const c = client({ replySocket: false });
    // A registration whose port nobody listens on (a requester that died without removing it).
    await redis.set(replySocketKey(keys.replies(c.id)), `127.0.0.1:${await freePort()} ${"s".repeat(32)}`, "PX", 60_000);
    for (let n = 0; n < 10; n++) await call(c, deployment, { n });
    assert.deepEqual(c.repliesBy, { socket: 0, list: 10 });
  });

  it("refuses a connection without the secret and one that sends too much before it; a forged answer does not reach the request", async () => {
    const c = client();
    await c.socketReady();
    const port = c.replySocketPort;
    assert.ok(port, "the requester listens");
    // A request nobody serves: it stays pending until the forged answer is (not) taken.
    const pending = c.submit("nobody", { kind: "call", payload: 1 }, { timeoutMs: 60_000 });
    pending.catch(() => undefined);
    await waitFor("the request to be pending", () => c.inflight === 1);
    const forged = JSON.stringify({ requestId: "0", status: 200, headers: {}, body: "", value: "forged" });
    const closedAfter = async (data: string): Promise<string> => {
      const socket = net.connect({ host: "127.0.0.1", port });
      let said = "";
      socket.on("data", (d: Buffer) => (said += d.toString()));
      socket.on("error", () => undefined);
      await new Promise((resolve) => socket.once("connect", resolve));
      socket.write(data);
      await waitFor("the requester to close the connection", () => socket.destroyed || socket.readableEnded, { timeoutMs: 5_000 });
      socket.destroy();
      return said;
    };
    assert.equal(await closedAfter(`not-the-secret\n${forged}\n`), "", "a wrong secret: closed, no ok");
    assert.equal(await closedAfter("x".repeat(4096)), "", "too much before any secret: closed");
    assert.equal(await closedAfter(""), "", "nothing at all: closed after the hello timeout");
    assert.equal(c.inflight, 1, "the forged answer was not taken");
    assert.equal(c.repliesBy.socket, 0);
  });

  it("pushes nothing to a key beside a reply list that a job names as its reply list (a socket's registration, a stream's chunks)", async () => {
    const deployment = "hostile";
    await replica(deployment);
    const c = client();
    await c.socketReady();
    const registration = replySocketKey(keys.replies(c.id));
    const registered = await redis.get(registration);
    assert.ok(registered);
    const chunks = keys.streamKeys(keys.replies(c.id), "7", "w").chunks;
    await redis.rpush(chunks, "chunk-0");
    const queue = new Queue(queueKeys.name(deployment), { connection: redis, prefix: queueKeys.prefix });
    closers.push(() => queue.close());
    for (const replyTo of [registration, chunks]) {
      const job = await queue.add("request", { kind: "call", payload: { replyTo }, replyTo, requestId: "7" }, { removeOnComplete: false });
      await waitFor(`the job naming ${replyTo} to complete`, async () => (await queue.getJobState(job.id!)) === "completed", { describe: () => queue.getJobState(job.id!) });
    }
    assert.equal(await redis.get(registration), registered, "the registration is as the requester wrote it");
    assert.deepEqual(await redis.lrange(chunks, 0, -1), ["chunk-0"], "nothing was added to the stream's chunks");
  });
});
