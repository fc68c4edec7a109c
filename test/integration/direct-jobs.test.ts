/**
 * Requests handed to a replica directly (src/queue/direct-jobs.ts) on the
 * real Redis: a lone request becomes a job in the deployment's queue that is
 * active and locked for the replica's worker while it runs, and completes;
 * the add-and-take takes nothing ahead of the queue (jobs waiting, a paused
 * queue); a job given back is the next one taken; a replica killed while it
 * runs a request handed to it loses nothing (the host's lock release
 * requeues it, another replica answers); a draining replica stops being
 * offered requests and the others answer them.
 */
import assert from "node:assert/strict";
import { fork, type ChildProcess } from "node:child_process";
import { describe, it } from "node:test";
import { RequestClient } from "../../src/client/request-client.js";
import { DeploymentQueue } from "../../src/queue/deployment-queue.js";
import { releaseWorkerLocks } from "../../src/queue/worker-locks.js";
import { Queue } from "../../src/queue/bullmq.js";
import type { Reply } from "../../src/shared/protocol.js";
import { echoReplica, startReplica, stopReplica } from "../helpers/echo-replica.js";
import { queueFixture } from "../helpers/queues.js";
import { REDIS_URL } from "../helpers/redis.js";
import { waitFor } from "../helpers/wait.js";

process.env.FLOTILLA_LOG_LEVEL ??= "warn";

describe("requests handed to a replica directly", () => {
  const { namespace, keys, queueKeys, redis, closers } = queueFixture("direct");

  function client(): RequestClient {
    const c = new RequestClient({ redisUrl: REDIS_URL, namespace });
    closers.push(() => c.close());
    return c;
  }

  async function replica(deployment: string, id: string, importRef = "slow.ts"): Promise<ReturnType<typeof echoReplica>> {
    const runner = echoReplica(namespace, id, { deployment, importRef });
    closers.push(() => stopReplica(runner, `replica ${id}`).catch(() => undefined));
    await startReplica(runner, `replica ${id}`);
    return runner;
  }

  /** Sends quick lone requests until one is handed over directly (the replica offers slots once it is connected and its jobs are fast). */
  async function untilDirect(c: RequestClient, deployment: string): Promise<void> {
    const start = c.directJobs;
    await waitFor(
      "a lone request handed to the replica directly",
      async () => {
        await c.submit(deployment, { kind: "call", payload: { ms: 0 } });
        return c.directJobs > start;
      },
      // A replica offers slots only while its runs are fast, which a machine loaded by other tests can hold off for a while.
      { timeoutMs: 30_000, describe: () => ({ directJobs: c.directJobs, repliesBy: c.repliesBy }) },
    );
  }

  const slept = (reply: Reply): number => (reply.value as { slept: number }).slept;

  it("makes a lone request a job in the queue, active and locked for the replica's worker while it runs, then completed", async () => {
    const deployment = "held";
    const runner = await replica(deployment, "r-held");
    const c = client();
    await untilDirect(c, deployment);
    const k = queueKeys.of(deployment);
    const direct = c.directJobs;
    const id = String(Number(await redis.get(k.id)) + 1);
    const answer = c.submit(deployment, { kind: "call", payload: { ms: 1_500 } });
    await waitFor(`the request's job (${id}) in the active list`, async () => (await redis.lrange(k.active, 0, -1)).includes(id));
    await waitFor("the request handed over directly", () => c.directJobs === direct + 1, { describe: () => c.directJobs });
    const token = await redis.get(`${k.jobPrefix}${id}:lock`);
    const worker = runner.report().workerId;
    assert.ok(worker && token?.startsWith(`${worker}:`), `locked with a token of the replica's worker (${token}, worker ${worker})`);
    const job = await redis.hgetall(`${k.jobPrefix}${id}`);
    assert.equal(job.ats, "1", "its start is counted");
    assert.ok(Number(job.processedOn) > 0, "it has a start time");
    assert.equal(JSON.parse(job.data ?? "{}").payload.ms, 1_500, "its data is the request's");
    assert.equal(await redis.llen(k.wait), 0, "it never waited");
    assert.equal(slept(await answer), 1_500);
    await waitFor("the job to be completed and removed", async () => (await redis.exists(`${k.jobPrefix}${id}`, `${k.jobPrefix}${id}:lock`)) === 0 && (await redis.llen(k.active)) === 0);
  });

  it("takes nothing ahead of the queue: with a job waiting or the queue paused, the new job waits too; a job given back is taken next", async () => {
    const deployment = "fifo";
    const queue = new DeploymentQueue(redis, namespace, deployment);
    const bull = new Queue(queueKeys.name(deployment), { connection: redis, prefix: queueKeys.prefix });
    closers.push(() => queue.close(), () => bull.close());
    await queue.ready();
    await waitFor("the queue to add and take in one script", () => queue.takesOnAdd);
    const k = queueKeys.of(deployment);
    const job = { kind: "call" as const, payload: 1, replyTo: keys.replies("nobody"), requestId: "1" };

    const first = await queue.addTaken(job, "w1:d1", 15_000);
    assert.equal(first.taken, true, "an empty queue: taken");
    assert.deepEqual(await redis.lrange(k.active, 0, -1), [first.id]);
    assert.equal(await redis.get(`${k.jobPrefix}${first.id}:lock`), "w1:d1");
    assert.ok((await redis.pttl(`${k.jobPrefix}${first.id}:lock`)) > 10_000, "the lock lasts the given duration");
    assert.equal(await redis.zcard(k.marker), 0, "no marker wakes a wait for a job already taken");

    const [waiting] = await queue.addRequests([job]);
    const second = await queue.addTaken(job, "w1:d2", 15_000);
    assert.equal(second.taken, false, "a job waits before it: not taken");
    assert.deepEqual(await redis.lrange(k.wait, 0, -1), [second.id, waiting], "behind the one that waited");
    assert.equal(await redis.exists(`${k.jobPrefix}${second.id}:lock`), 0);
    assert.ok((await redis.zscore(k.marker, "0")) !== null, "a marker wakes a wait for it");

    assert.equal(await queue.giveBack(first.id, "w1:other"), false, "not given back with another token");
    assert.equal(await queue.giveBack(first.id, "w1:d1"), true);
    assert.deepEqual(await redis.lrange(k.wait, 0, -1), [second.id, waiting, first.id], "the job given back is taken next");
    assert.equal(await redis.llen(k.active), 0);
    assert.equal(await redis.exists(`${k.jobPrefix}${first.id}:lock`), 0, "its lock is gone");
    assert.equal(await redis.hget(`${k.jobPrefix}${first.id}`, "ats"), "0", "its start is uncounted");

    await redis.del(k.wait, k.marker);
    await bull.pause();
    const paused = await queue.addTaken(job, "w1:d3", 15_000);
    assert.equal(paused.taken, false, "a paused queue: not taken");
    assert.equal(await redis.llen(k.active), 0);
    assert.equal(await redis.zcard(k.marker), 0, "no marker while paused");

    await bull.resume();
    await redis.del(k.wait, k.marker, k.active);
    const prioritized = await bull.add("other", {}, { priority: 1 });
    assert.equal((await queue.addTaken(job, "w1:d4", 15_000)).taken, false, "a prioritized job waits: not taken");
    await redis.del(k.wait, k.marker, k.prioritized, `${k.jobPrefix}${prioritized.id}`);
    const later = await bull.add("other", {}, { delay: 60_000 });
    assert.equal((await queue.addTaken(job, "w1:d5", 15_000)).taken, true, "a delayed job not yet due: taken");
    await redis.del(k.delayed, k.marker, k.active, `${k.jobPrefix}${later.id}`);
    const due = await bull.add("other", {}, { delay: 1 });
    await waitFor("the delayed job to be due", () => Date.now() > due.timestamp + 20);
    assert.equal((await queue.addTaken(job, "w1:d6", 15_000)).taken, false, "a delayed job due (not yet promoted): not taken");
  });

  it("loses nothing when the replica dies running a request handed to it: its lock released, another replica answers", async () => {
    const deployment = "doomed";
    const child: ChildProcess = fork(new URL("../tools/echo-replica-process.ts", import.meta.url), {
      execArgv: ["--import", "tsx"],
      env: { ...process.env, REDIS_URL, FLOTILLA_NAMESPACE: namespace, FLOTILLA_DEPLOYMENT: deployment, FLOTILLA_IMPORT_REF: "slow.ts" },
    });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once("exit", (_code, signal) => resolve(signal)));
    closers.push(async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    });
    const started = (await Promise.race([
      new Promise((resolve) => child.once("message", resolve)),
      exited.then(() => {
        throw new Error("the replica process exited before it ran");
      }),
    ])) as { workerId: string };
    const c = client();
    await untilDirect(c, deployment);
    const k = queueKeys.of(deployment);
    const direct = c.directJobs;
    const id = String(Number(await redis.get(k.id)) + 1);
    const answer = c.submit(deployment, { kind: "call", payload: { ms: 2_000 } }, { timeoutMs: 60_000 });
    await waitFor(`the request's job (${id}) in the active list`, async () => (await redis.lrange(k.active, 0, -1)).includes(id));
    await waitFor("the request handed over directly", () => c.directJobs === direct + 1, { describe: () => c.directJobs });
    child.kill("SIGKILL");
    assert.equal(await exited, "SIGKILL");
    // What the host does when one of its replicas dies.
    assert.equal(await releaseWorkerLocks(redis, keys, deployment, started.workerId), 1, "the dead replica's lock on the job");
    await replica(deployment, "r-heir");
    const reply = await answer;
    assert.equal(slept(reply), 2_000, "answered by the other replica");
    assert.equal(reply.status, 200);
    await waitFor("the job to be completed and removed", async () => (await redis.exists(`${k.jobPrefix}${id}`)) === 0);
  });

  it("hands lone requests to the replicas in turn", async () => {
    const deployment = "turns";
    await replica(deployment, "r-one");
    await replica(deployment, "r-two");
    const c = client();
    const byReplica = new Map<string, number>();
    // Each replica offers slots once it has answered this requester over its socket (its first answers may come through the queue).
    await waitFor(
      "both replicas answering requests handed to them",
      async () => {
        const direct = c.directJobs;
        const reply = await c.submit(deployment, { kind: "call", payload: { ms: 0 } });
        if (c.directJobs > direct && reply.replica) byReplica.set(reply.replica, (byReplica.get(reply.replica) ?? 0) + 1);
        return byReplica.size === 2;
      },
      { timeoutMs: 20_000, describe: () => Object.fromEntries(byReplica) },
    );
    // The last 20 requests handed over, by replica: counted among those handed over only, and judged over a window that moves, since a
    // slow run on a loaded machine (a pause) makes a replica withdraw its offers until its jobs are fast again; in turn, it comes back.
    const last: string[] = [];
    const shares = (): Record<string, number> => {
      const counts: Record<string, number> = {};
      for (const r of last) counts[r] = (counts[r] ?? 0) + 1;
      return counts;
    };
    await waitFor(
      "20 lone requests handed over in a row, both replicas among them, each with 5 or more",
      async () => {
        const direct = c.directJobs;
        const reply = await c.submit(deployment, { kind: "call", payload: { ms: 0 } });
        if (c.directJobs > direct) {
          last.push(reply.replica ?? "?");
          if (last.length > 20) last.shift();
        }
        const now = shares();
        return last.length === 20 && Object.keys(now).length === 2 && (now["r-one"] ?? 0) >= 5 && (now["r-two"] ?? 0) >= 5;
      },
      { timeoutMs: 20_000, intervalMs: 0, describe: () => ({ lastTwenty: shares() }) },
    );
  });

  it("keeps handing requests to a replica after one slow run: one pause does not withdraw its offers", async () => {
    const deployment = "paused";
    await replica(deployment, "r-paused");
    const c = client();
    await untilDirect(c, deployment);
    const call = async (ms: number): Promise<boolean> => {
      const direct = c.directJobs;
      await c.submit(deployment, { kind: "call", payload: { ms } });
      return c.directJobs > direct;
    };
    // A router sends one request a second through the queue; the replica weighs its offers when its loop takes such a job. So: one
    // through the queue, a slow run (longer than that second), the next request through the queue (the replica has weighed the slow
    // run when it answers it), and the one after, within the second, is handed over if the replica still offers. Tried again when
    // that came too late, or when it was not handed over (a loaded machine can slow every run); a replica that withdraws its offers
    // after one slow run does so in every try.
    const outcomes: string[] = [];
    await waitFor(
      "a request after a slow run and one through the queue handed over",
      async () => {
        await waitFor("a request through the queue", async () => !(await call(0)), { intervalMs: 0 });
        await call(1_100);
        const queuedAt = Date.now();
        if (await call(0)) return false;
        const handed = await call(0);
        if (Date.now() - queuedAt > 800) return false;
        outcomes.push(handed ? "handed over" : "sent through the queue");
        return handed;
      },
      { timeoutMs: 30_000, describe: () => ({ outcomes }) },
    );
  });

  it("hands requests to a replica started later too, once a request through the queue has reached it", async () => {
    const deployment = "later";
    await replica(deployment, "r-early");
    const c = client();
    await untilDirect(c, deployment);
    await replica(deployment, "r-late");
    let seen: string | undefined;
    await waitFor(
      "a lone request handed to the replica started later",
      async () => {
        const direct = c.directJobs;
        const reply = await c.submit(deployment, { kind: "call", payload: { ms: 0 } });
        seen = reply.replica;
        return c.directJobs > direct && reply.replica === "r-late";
      },
      { timeoutMs: 30_000, intervalMs: 0, describe: () => ({ lastAnsweredBy: seen, directJobs: c.directJobs }) },
    );
  });

  it("stops handing requests to a replica that drains; the others answer them", async () => {
    const deployment = "drained";
    const first = await replica(deployment, "r-first");
    const c = client();
    await untilDirect(c, deployment);
    await replica(deployment, "r-second");
    const draining = stopReplica(first, "replica r-first");
    const replies = [];
    for (let n = 0; n < 30; n++) replies.push(await c.submit(deployment, { kind: "call", payload: { ms: 0 } }, { timeoutMs: 20_000 }));
    await draining;
    assert.ok(replies.every((r) => r.status === 200 && slept(r) === 0), "every request answered");
    const k = queueKeys.of(deployment);
    await waitFor("nothing left in the queue", async () => (await redis.llen(k.active)) + (await redis.llen(k.wait)) === 0);
    // The second replica takes handed-over requests once it is connected and its jobs are fast.
    await untilDirect(c, deployment);
  });
});
