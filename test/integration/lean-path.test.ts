/**
 * The request path's lean scripts on the real Redis (take, finish, add; see
 * src/queue/lean-scripts.ts): a plain BullMQ client's job is still answered
 * with BullMQ's completion event; a request's job is completed with its reply
 * and leaves nothing behind; a job a replica took the lean way and never
 * finished (the replica died) is run again by another replica; and each
 * process sends a lone request's steps together: the requester its add with
 * the pop that waits for the answer, a replica that runs one request at a
 * time its finish with its next wait, one that runs several keeps its waits
 * queued ahead, and a batch's replies go with the batch's finish (the requesters
 * here have no reply socket: see reply-sockets.test.ts for that way).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RequestClient } from "../../src/client/request-client.js";
import { Queue } from "../../src/queue/bullmq.js";
import { DeploymentQueue } from "../../src/queue/deployment-queue.js";
import { Answered, DeploymentWorker } from "../../src/queue/deployment-worker.js";
import { releaseWorkerLocks } from "../../src/queue/worker-locks.js";
import { createLogger } from "../../src/shared/logger.js";
import { echoReplica } from "../helpers/echo-replica.js";
import { Monitor } from "../helpers/monitor.js";
import { queueFixture } from "../helpers/queues.js";
import { REDIS_URL, testRedis } from "../helpers/redis.js";
import { waitFor } from "../helpers/wait.js";

process.env.FLOTILLA_LOG_LEVEL ??= "warn";

/** BullMQ's QueueEvents, loaded the way a plain client loads it (src/queue/bullmq.ts loads only what Flotilla uses). */
const { QueueEvents } = (await import("bullmq")) as typeof import("bullmq");

describe("lean request path", () => {
  const { namespace, keys, queueKeys, redis, closers } = queueFixture("lean");

  async function replica(deployment: string, maxConcurrentQueries?: number) {
    const runner = echoReplica(namespace, `r-${deployment}`, { deployment, importRef: "echo.ts" }, maxConcurrentQueries);
    runner.actor.start();
    closers.push(async () => {
      runner.actor.send({ type: "DRAIN" });
      await waitFor(`replica of ${deployment} to stop`, () => runner.report().state === "stopped");
      await runner.closeConnections();
    });
    await waitFor(`replica of ${deployment} to run`, () => runner.report().state === "running");
    return runner;
  }

  it("answers a plain BullMQ client's job, which gets BullMQ's completion event with the reply", async () => {
    await replica("plain");
    const connection = testRedis();
    const queue = new Queue(queueKeys.name("plain"), { connection, prefix: queueKeys.prefix });
    const events = new QueueEvents(queueKeys.name("plain"), { connection: { url: REDIS_URL } as never, prefix: queueKeys.prefix });
    closers.push(async () => {
      await events.close();
      await queue.close();
      connection.disconnect();
    });
    await events.waitUntilReady();
    for (let n = 0; n < 3; n++) {
      // Kept a while on completion: removed at once (the replica's default), the job can be gone before waitUntilFinished looks.
      const job = await queue.add("request", { kind: "call", payload: { n } }, { removeOnComplete: 10 });
      const reply = (await job.waitUntilFinished(events, 10_000)) as { status: number; value: { payload: unknown } };
      assert.equal(reply.status, 200);
      assert.deepEqual(reply.value.payload, { n }, `job ${job.id}: the whole reply is its return value`);
    }
  });

  it("completes a request's job with its reply and leaves no lock, active entry, stalled mark, job hash or event behind", async () => {
    await replica("quiet");
    const client = new RequestClient({ redisUrl: REDIS_URL, namespace });
    closers.push(() => client.close());
    const idKey = queueKeys.key("quiet", "id");
    const first = Number(await redis.get(idKey)) + 1;
    for (let n = 0; n < 20; n++) {
      const reply = await client.submit("quiet", { kind: "call", payload: { n } });
      assert.deepEqual((reply.value as { payload: unknown }).payload, { n });
    }
    const last = Number(await redis.get(idKey));
    assert.ok(last >= first + 19, `20 jobs were added (ids ${first}..${last})`);
    const ids = Array.from({ length: last - first + 1 }, (_, i) => String(first + i));
    await waitFor("every job to be completed and removed", async () => (await redis.exists(...ids.map((id) => queueKeys.key("quiet", id)))) === 0);
    assert.equal(await redis.exists(...ids.map((id) => queueKeys.key("quiet", `${id}:lock`))), 0, "no lock left");
    assert.equal(await redis.llen(queueKeys.key("quiet", "active")), 0);
    assert.equal(await redis.llen(queueKeys.key("quiet", "wait")), 0);
    assert.equal(await redis.exists(queueKeys.key("quiet", "completed")), 0, "completed jobs are not kept");
    const stalled = await redis.smembers(queueKeys.key("quiet", "stalled"));
    assert.deepEqual(stalled.filter((id) => ids.includes(id)), []);
    const entries = await redis.xrange(queueKeys.key("quiet", "events"), "-", "+");
    const mentioned = entries.filter(([, fields]) => ids.includes(fields[fields.indexOf("jobId") + 1] ?? ""));
    assert.deepEqual(mentioned, [], "no event stream entry for a request's job");
  });

  it("sends a lone request's add with the requester's pop, and, from a replica that runs one request at a time, its finish (with the reply) ahead of the replica's next wait", async () => {
    const deployment = "lanes";
    const client = await answeredClient(deployment, 1);
    const repliesName = `flotilla-${client.id}-replies`;
    const seen = await monitored(async () => {
      for (let n = 0; n < 3; n++) assert.deepEqual(((await client.submit(deployment, { kind: "call", payload: { n } })).value as { payload: unknown }).payload, { n });
      // No request pending: the requester holds no pop open (a reader that kept one would show as blocked, flag b).
      await new Promise((resolve) => setImmediate(resolve));
      await waitFor("the reply connection to hold no pop", async () => !/ flags=\S*b/.test(await clientLine(repliesName)), { describe: () => repliesName });
      // The replica's next wait is sent once its last finish is answered: watched until it blocks, so the window holds it.
      const workerName = `${queueKeys.prefix}:${Buffer.from(queueKeys.name(deployment)).toString("base64")}`;
      const waiting = async (): Promise<string[]> => String(await redis.client("LIST")).split("\n").filter((l) => l.includes(` name=${workerName}`));
      await waitFor("the replica's next wait to block", async () => (await waiting()).some((l) => / cmd=bzpopmin /.test(l) && / flags=\S*b/.test(l)), { describe: waiting });
    });
    const repliesConnection = await addressOf(repliesName);
    const idKey = queueKeys.key(deployment, "id");
    const adds = seen.filter((c) => c.args[0] === "evalsha" && c.args[3] === idKey);
    assert.equal(adds.length, 3, "three adds");
    for (const add of adds) {
      assert.equal(add.source, repliesConnection, "each add goes on the requester's reply connection (it was idle)");
      assert.equal(nextFrom(seen, add)?.args[0], "blmpop", "and the pop that waits for its answer follows it there");
    }
    const pops = seen.filter((c) => c.source === repliesConnection && c.args[0] === "blmpop");
    assert.equal(pops.length, 3, `one pop per request, none while nothing was pending (${pops.length})`);
    const activeKey = queueKeys.key(deployment, "active");
    const finishes = seen.filter((c) => c.args[0] === "evalsha" && c.args[3] === activeKey && c.args.length > 8);
    assert.equal(finishes.length, 3, "three finishes, each with its reply");
    for (const finish of finishes) {
      const next = nextFrom(seen, finish);
      assert.equal(next?.args[0], "bzpopmin", "each finish is followed, on the same connection, by the replica's next wait");
      assert.equal(next?.args[1], queueKeys.key(deployment, "marker"));
    }
  });

  it("keeps the waits of a replica that runs several requests at once queued ahead: Redis runs each right after the take before it, and the finishes go on another connection", async () => {
    const deployment = "ahead";
    const client = await answeredClient(deployment);
    const seen = await monitored(async () => {
      for (let n = 0; n < 3; n++) assert.deepEqual(((await client.submit(deployment, { kind: "call", payload: { n } })).value as { payload: unknown }).payload, { n });
      await waitFor("the three jobs to be completed", async () => (await redis.llen(queueKeys.key(deployment, "active"))) === 0);
    });
    const waitKey = queueKeys.key(deployment, "wait");
    const activeKey = queueKeys.key(deployment, "active");
    const waits = seen.filter((c) => c.args[0] === "bzpopmin");
    assert.ok(waits.length >= 3, `a wait ran after each of the three takes (${waits.length} waits)`);
    const takes = seen.filter((c) => c.args[0] === "evalsha" && c.args[3] === waitKey);
    assert.equal(takes.length, 3, "three takes");
    for (const take of takes) {
      const next = nextFrom(seen, take);
      assert.equal(next?.args[0], "bzpopmin", "each take is followed, on its connection, by a wait queued ahead, not sent after the job");
    }
    const finishes = seen.filter((c) => c.args[0] === "evalsha" && c.args[3] === activeKey);
    assert.equal(finishes.length, 3, "three finishes, each with its reply");
    const waitConnections = new Set(waits.map((c) => c.source));
    assert.ok(finishes.every((f) => !waitConnections.has(f.source)), "no finish goes on the connection the waits are queued on");
  });

  it("answers the requests of a batch job together with the batch's finish, in one script", async () => {
    const deployment = "grouped";
    // Fast answers first: the requester batches only a deployment it knows to be fast.
    const client = await answeredClient(deployment);
    const seen = await monitored(async () => {
      const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => client.submit(deployment, { kind: "call", payload: { i } })));
      replies.forEach((reply, i) => assert.deepEqual((reply.value as { payload: unknown }).payload, { i }));
    });
    const replyKey = keys.replies(client.id);
    const activeKey = queueKeys.key(deployment, "active");
    const finishes = seen.filter((c) => c.args[0] === "evalsha" && c.args[3] === activeKey && c.args[6] === replyKey);
    const carried = finishes.reduce((sum, c) => sum + c.args.length - 10, 0);
    assert.equal(carried, 20, `the finishes carried all 20 replies (${finishes.length} finishes)`);
    assert.ok(finishes.some((c) => c.args.length - 10 > 1), "a finish carried several replies: the requests went as a batch");
    const pushes = seen.filter((c) => c.source !== "lua" && c.args[0] === "rpush");
    assert.deepEqual(pushes, [], "no reply was pushed on its own");
  });

  /** This namespace's commands Redis ran while `run` ran, in order, with the address of the connection that sent each ("lua" inside scripts). */
  async function monitored(run: () => Promise<void>): Promise<Array<{ source: string; args: string[] }>> {
    const commands = await Monitor.during(REDIS_URL, (c) => c.args.some((a) => a.includes(namespace)), redis, run);
    return commands.map((c) => ({ source: c.source, args: [(c.args[0] ?? "").toLowerCase(), ...c.args.slice(1)] }));
  }

  /**
   * A replica of `deployment` and a requester that has had three answers from it (so it knows the deployment is fast).
   * The requester takes answers from its list only (no reply socket): these tests look at the Redis path's steps.
   */
  async function answeredClient(deployment: string, maxConcurrentQueries?: number): Promise<RequestClient> {
    await replica(deployment, maxConcurrentQueries);
    const client = new RequestClient({ redisUrl: REDIS_URL, namespace, replySocket: false });
    closers.push(() => client.close());
    for (let n = 0; n < 3; n++) await client.submit(deployment, { kind: "call", payload: { warm: n } });
    return client;
  }

  /** The line CLIENT LIST gives for the connection of this name ("" if none). */
  async function clientLine(name: string): Promise<string> {
    return String(await redis.client("LIST")).split("\n").find((l) => l.includes(` name=${name} `)) ?? "";
  }

  /** The address CLIENT LIST gives for the connection of this name. */
  async function addressOf(name: string): Promise<string> {
    const address = /addr=(\S+)/.exec(await clientLine(name))?.[1];
    assert.ok(address, `a connection named ${name}`);
    return address;
  }

  /** The next command the same connection sent after `command`. */
  function nextFrom(seen: Array<{ source: string; args: string[] }>, command: { source: string; args: string[] }) {
    return seen.slice(seen.indexOf(command) + 1).find((c) => c.source === command.source);
  }

  it("runs again on another replica a job whose replica took it the lean way and died before finishing", async () => {
    const deployment = "crashy";
    const replyList = `${keys.repliesPrefix}lean-test`;
    const log = createLogger("lean-test");
    const base = { namespace, deployment, concurrency: 4, maxRetries: 3, isIdle: () => true, log };
    const taken: string[] = [];
    const deadConnection = testRedis();
    // The first replica takes the job and never answers (its process is stuck), then dies.
    const dead = new DeploymentWorker({ ...base, connection: deadConnection, process: () => new Promise(() => taken.push("dead")) });
    await dead.ready();
    const queue = new DeploymentQueue(redis, namespace, deployment);
    closers.push(() => queue.close());
    const [jobId] = await queue.addRequests([{ kind: "call", payload: { crash: 1 }, replyTo: replyList, requestId: "1" }]);
    const lockKey = queueKeys.key(deployment, `${jobId}:lock`);
    await waitFor("the first replica to take the job", async () => taken.length === 1 && (await redis.exists(lockKey)) === 1);
    const token = await redis.get(lockKey);
    assert.ok(token?.startsWith(`${dead.id}:`), `the job is locked with the first replica's token (${token})`);
    assert.deepEqual(await redis.lrange(queueKeys.key(deployment, "active"), 0, -1), [jobId]);
    await dead.close(true);
    deadConnection.disconnect();
    // What a host does when its replica dies: release its locks, for the stalled check of any replica to requeue the job.
    assert.equal(await releaseWorkerLocks(redis, keys, deployment, dead.id), 1);

    const liveConnection = testRedis();
    const live = new DeploymentWorker({
      ...base,
      connection: liveConnection,
      process: async (data) => {
        taken.push("live");
        return new Answered({ status: 200 }, replyList, [JSON.stringify({ requestId: "1", status: 200, data })]);
      },
    });
    closers.push(async () => {
      await live.close();
      liveConnection.disconnect();
    });
    const answer = await redis.blpop(replyList, 15);
    assert.ok(answer, "the second replica answered within 15 s");
    assert.deepEqual(JSON.parse(answer[1]).data.payload, { crash: 1 });
    assert.deepEqual(taken, ["dead", "live"]);
    await waitFor("the job to be completed and removed", async () => (await redis.exists(queueKeys.key(deployment, jobId as string))) === 0);
    assert.equal(await redis.llen(queueKeys.key(deployment, "active")), 0);
    assert.equal(await redis.exists(lockKey), 0);
  });
});
