/**
 * The lean main loop (src/queue/lean-loop.ts) on the real Redis, on a BullMQ
 * worker set up as a replica's is (lean finish, loop, idle tuning): it runs
 * up to its concurrency and no more, completes each job once with its
 * replies, renews the lock of a job that outlives it, fails a job whose
 * processor throws as BullMQ does, drains on close, and a worker lacking an
 * internal it needs runs BullMQ's own loop, said once, loudly.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { pino } from "pino";
import { Worker } from "../../src/queue/bullmq.js";
import { Answered, leanFinish } from "../../src/queue/lean-finish.js";
import { leanLoop, missingLoopInternals } from "../../src/queue/lean-loop.js";
import { tuneIdleWorker, WaitLane } from "../../src/queue/tuned-worker.js";
import { queueFixture } from "../helpers/queues.js";
import { testRedis } from "../helpers/redis.js";
import { waitFor } from "../helpers/wait.js";

describe("lean main loop", () => {
  const { queueKeys, keys, redis, closers, queue } = queueFixture("loop");
  const lines: Array<{ level: number; msg: string; missing?: string[]; feature?: string }> = [];
  const log = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line)) });

  interface Options {
    concurrency?: number;
    lockDuration?: number;
    stalledInterval?: number;
    /** Removes this worker internal before the loop is installed. */
    lacking?: string;
    /** Replies go "over the requester's socket" (recorded in `sent`), not in the finish. */
    sent?: string[];
  }

  /** A worker on queue `name` composed as DeploymentWorker composes a replica's, running `process` on each job's data. */
  function worker(name: string, process: (data: unknown) => Promise<unknown>, options: Options = {}) {
    const connection = testRedis();
    const w = new Worker(
      queueKeys.name(name),
      async (job) => {
        const result = await process(job.data);
        return result instanceof Answered ? finisher.answer(job, result) : result;
      },
      {
        connection,
        prefix: queueKeys.prefix,
        concurrency: options.concurrency ?? 1,
        lockDuration: options.lockDuration ?? 15_000,
        stalledInterval: options.stalledInterval ?? 1_000,
        removeOnComplete: { count: 0 },
        autorun: false,
      },
    );
    if (options.lacking) (w as unknown as Record<string, unknown>)[options.lacking] = undefined;
    const lane = new WaitLane();
    const sent = options.sent;
    const send = sent ? (_list: string, replies: readonly string[]) => (sent.push(...replies), true) : undefined;
    const finisher = leanFinish(w, async (list, replies) => void (await connection.rpush(list, ...replies)), log, lane, send);
    const raised = leanLoop(w, process, finisher, log);
    if (options.lacking) delete (w as unknown as Record<string, unknown>)[options.lacking];
    tuneIdleWorker(w, () => false, queueKeys.of(name), log, lane);
    closers.push(async () => {
      await w.close(true);
      connection.disconnect();
    });
    void w.run();
    return { w, raised };
  }

  /** Adds jobs as a requester does: removed on completion, each with a reply list to answer on. */
  async function addJobs(name: string, count: number, list: string): Promise<string[]> {
    const q = queue(name);
    const jobs = await q.addBulk(Array.from({ length: count }, (_, i) => ({ name: "request", data: { i, list }, opts: { removeOnComplete: true } })));
    return jobs.map((j) => String(j.id));
  }

  const answer = (data: unknown): Answered => {
    const { i, list } = data as { i: number; list: string };
    return new Answered({ status: 200 }, list, [JSON.stringify({ i })]);
  };

  it("runs up to its concurrency at once and no more, and answers each job once, leaving nothing behind", async () => {
    const name = "bounded";
    const list = `${keys.repliesPrefix}bounded`;
    let running = 0;
    let most = 0;
    const ran: number[] = [];
    const release: Array<() => void> = [];
    worker(
      name,
      async (data) => {
        running++;
        most = Math.max(most, running);
        ran.push((data as { i: number }).i);
        await new Promise<void>((resolve) => release.push(resolve));
        running--;
        return answer(data);
      },
      { concurrency: 3 },
    );
    const ids = await addJobs(name, 10, list);
    while (ran.length < 10) {
      await waitFor(`three of the jobs to run at once (ran ${ran.length})`, () => running === Math.min(3, 10 - (ran.length - running)) && release.length > 0, {
        describe: () => JSON.stringify({ running, most, ran }),
      });
      release.splice(0).forEach((r) => r());
    }
    release.splice(0).forEach((r) => r());
    await waitFor("ten replies", async () => (await redis.llen(list)) === 10);
    assert.equal(most, 3, "never more than its concurrency at once");
    assert.deepEqual([...ran].sort((a, b) => a - b), [...Array(10).keys()], "each job ran once");
    const replies = (await redis.lrange(list, 0, -1)).map((r) => (JSON.parse(r) as { i: number }).i).sort((a, b) => a - b);
    assert.deepEqual(replies, [...Array(10).keys()], "each job answered once");
    assert.equal(await redis.llen(queueKeys.key(name, "active")), 0, "nothing left active");
    for (const id of ids) assert.equal(await redis.exists(queueKeys.key(name, id), queueKeys.key(name, `${id}:lock`)), 0, `job ${id} and its lock removed`);
  });

  it("takes more at once when its concurrency is raised while it waits for a free slot", async () => {
    const name = "raised";
    const list = `${keys.repliesPrefix}raised`;
    let running = 0;
    const release: Array<() => void> = [];
    const { w, raised } = worker(name, async (data) => {
      running++;
      await new Promise<void>((resolve) => release.push(resolve));
      running--;
      return answer(data);
    });
    await addJobs(name, 3, list);
    await waitFor("one job to run", () => running === 1);
    w.concurrency = 3;
    assert.ok(raised, "the loop is installed");
    raised();
    await waitFor("all three to run at once", () => running === 3, { describe: () => `running ${running}` });
    release.splice(0).forEach((r) => r());
    await waitFor("three replies", async () => (await redis.llen(list)) === 3);
  });

  it("with several slots, holds back a finish whose reply went over a socket, then completes it: nothing stays active", async () => {
    const name = "held";
    const list = `${keys.repliesPrefix}held`;
    const sent: string[] = [];
    // Longer than a turn, still fast enough for waits to be queued ahead (ARMED_BELOW_MS): each finish is held after the loop went back to its waits, and only the time limit sends it.
    worker(name, async (data) => (await new Promise((resolve) => setTimeout(resolve, 1)), answer(data)), { concurrency: 4, sent });
    const ids: string[] = [];
    for (let n = 0; n < 6; n++) {
      const [id] = await addJobs(name, 1, list);
      ids.push(id as string);
      await waitFor(`the reply to job ${n}`, () => sent.length === n + 1);
      // Nothing else happens meanwhile: the finish goes when its time is up (FINISH_HELD_MS), long before a queued wait ends (5 s).
      await waitFor(`job ${n} to be completed and removed`, async () => (await redis.exists(queueKeys.key(name, id as string))) === 0, {
        timeoutMs: 2_500,
        describe: async () => `active: ${JSON.stringify(await redis.lrange(queueKeys.key(name, "active"), 0, -1))}`,
      });
    }
    assert.equal(await redis.llen(queueKeys.key(name, "active")), 0, "nothing left active");
    assert.equal(await redis.exists(...ids.map((id) => queueKeys.key(name, `${id}:lock`))), 0, "no lock left");
    assert.equal(await redis.llen(list), 0, "no reply went to the list: they went over the socket");
    assert.deepEqual(sent.map((r) => (JSON.parse(r) as { i: number }).i), [0, 0, 0, 0, 0, 0]);
  });

  it("answers at once when its jobs turn slow while waits are queued ahead: no finish waits behind the last queued wait", async () => {
    const name = "turned";
    const list = `${keys.repliesPrefix}turned`;
    // Each job sleeps data.ms: fast ones get waits queued ahead, three slow ones in a row end that, and the waits still queued are used
    // up one by one; the finish of the job the last-but-one took is sent while the last one is out on the blocking connection.
    worker(
      name,
      async (data) => {
        await new Promise((resolve) => setTimeout(resolve, (data as { ms?: number }).ms ?? 1));
        return answer(data);
      },
      { concurrency: 4 },
    );
    const one = async (n: number, ms: number): Promise<void> => {
      await queue(name).add("request", { i: n, list, ms }, { removeOnComplete: true });
      // A reply goes in the finish's own script: held behind a wait, it would come when that wait ends (5 s).
      await waitFor(`the reply to job ${n} (${ms} ms)`, async () => (await redis.llen(list)) === n + 1, { timeoutMs: 2_500 });
    };
    let n = 0;
    for (let k = 0; k < 5; k++) await one(n++, 1);
    for (let k = 0; k < 3; k++) await one(n++, 30);
    for (let k = 0; k < 6; k++) await one(n++, 1);
    assert.equal(await redis.llen(queueKeys.key(name, "active")), 0, "nothing left active");
  });

  it("shares a burst of slow jobs between two workers: waits are queued ahead only for fast jobs, so one worker does not take the whole burst", async () => {
    const name = "burst";
    const list = `${keys.repliesPrefix}burst`;
    const ran = { a: 0, b: 0 };
    const slow = (who: "a" | "b") => async (data: unknown) => {
      ran[who]++;
      await new Promise((resolve) => setTimeout(resolve, 50));
      return answer(data);
    };
    const a = worker(name, slow("a"), { concurrency: 8 });
    const b = worker(name, slow("b"), { concurrency: 8 });
    await Promise.all([a.w.waitUntilReady(), b.w.waitUntilReady()]);
    await addJobs(name, 8, list);
    await waitFor("eight replies", async () => (await redis.llen(list)) === 8);
    assert.ok(ran.a >= 2 && ran.b >= 2, `each worker ran at least two of the eight (${JSON.stringify(ran)})`);
  });

  it("with its waits queued ahead, runs a plain BullMQ client's delayed job when it is due, and a prioritized one", async () => {
    const name = "due";
    const started = new Map<string, number>();
    worker(
      name,
      async (data) => {
        started.set((data as { tag: string }).tag, Date.now());
        return { done: true };
      },
      { concurrency: 4 },
    );
    const q = queue(name);
    await addJobs(name, 1, `${keys.repliesPrefix}due`);
    const DELAY_MS = 1_000;
    const added = Date.now();
    await q.add("request", { tag: "delayed" }, { delay: DELAY_MS, removeOnComplete: true });
    await q.add("request", { tag: "prioritized" }, { priority: 5, removeOnComplete: true });
    await waitFor("the prioritized job to run", () => started.has("prioritized"));
    await waitFor("the delayed job to run", () => started.has("delayed"), { timeoutMs: 10_000 });
    const late = (started.get("delayed") as number) - added - DELAY_MS;
    assert.ok(late >= 0, "not before it is due");
    // A queued wait blocks for 5 s (BullMQ's drainDelay): the job must not wait for one to end.
    assert.ok(late < 3_000, `it ran ${late} ms after it was due`);
  });

  it("renews the lock of a job that runs longer than the lock lasts: it runs once and completes", async () => {
    const name = "long";
    const list = `${keys.repliesPrefix}long`;
    const LOCK_MS = 1_000;
    let runs = 0;
    let release: (() => void) | undefined;
    worker(
      name,
      async (data) => {
        runs++;
        await new Promise<void>((resolve) => (release = resolve));
        return answer(data);
      },
      { lockDuration: LOCK_MS, stalledInterval: 300 },
    );
    const [id] = await addJobs(name, 1, list);
    await waitFor("the job to start", () => release !== undefined);
    const lockKey = queueKeys.key(name, `${id}:lock`);
    const started = Date.now();
    // Three lock lifetimes: without renewal the stalled check would have moved it back to wait, and it would run again.
    await waitFor("three lock lifetimes to pass", () => Date.now() - started > 3 * LOCK_MS, { timeoutMs: 10_000 });
    assert.ok((await redis.pttl(lockKey)) > 0, "the lock is still held, renewed");
    assert.equal(runs, 1, "it did not run again");
    release?.();
    await waitFor("its reply", async () => (await redis.llen(list)) === 1);
    assert.equal(await redis.exists(queueKeys.key(name, String(id)), lockKey), 0, "completed and removed");
    assert.equal(runs, 1);
  });

  it("fails a job whose processor throws, as BullMQ does, and goes on with the next", async () => {
    const name = "throws";
    const list = `${keys.repliesPrefix}throws`;
    const errors: Error[] = [];
    const { w } = worker(name, async (data) => {
      if ((data as { i: number }).i === 0) throw new Error("handler exploded");
      return answer(data);
    });
    w.on("error", (err) => errors.push(err));
    const [first] = await addJobs(name, 2, list);
    await waitFor("the second job's reply", async () => (await redis.llen(list)) === 1);
    const failed = await queue(name).getJob(String(first));
    assert.equal(await failed?.getState(), "failed", "the job that threw is failed");
    assert.equal(failed?.failedReason, "handler exploded", "with the processor's error as its reason");
    assert.deepEqual(errors, [], "no worker error");
  });

  it("on close, finishes the jobs it runs and takes no more: a job added after stays waiting", async () => {
    const name = "drain";
    const list = `${keys.repliesPrefix}drain`;
    let release: (() => void) | undefined;
    const { w } = worker(name, async (data) => {
      await new Promise<void>((resolve) => (release = resolve));
      return answer(data);
    });
    await addJobs(name, 1, list);
    await waitFor("the job to start", () => release !== undefined);
    let closed = false;
    const closing = w.close().then(() => (closed = true));
    // Closing waits for the running job.
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(closed, false, "close waits for the running job");
    release?.();
    await closing;
    assert.equal(await redis.llen(list), 1, "the running job was answered");
    const [late] = await addJobs(name, 1, list);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(await queue(name).getJobState(String(late)), "waiting", "a job added after close is not taken");
    assert.equal(await redis.exists(queueKeys.key(name, `${late}:lock`)), 0, "nor locked");
  });

  it("with its waits queued ahead, closes without waiting for them to end, and a job added after stays waiting", async () => {
    const name = "drain-ahead";
    const list = `${keys.repliesPrefix}drain-ahead`;
    const { w } = worker(name, async (data) => answer(data), { concurrency: 4 });
    await addJobs(name, 2, list);
    await waitFor("both replies", async () => (await redis.llen(list)) === 2);
    const started = Date.now();
    await w.close();
    // Each queued wait blocks for 5 s (BullMQ's drainDelay); closing drops them.
    assert.ok(Date.now() - started < 3_000, `closed in ${Date.now() - started} ms`);
    const [late] = await addJobs(name, 1, list);
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(await queue(name).getJobState(String(late)), "waiting", "a job added after close is not taken");
    assert.equal(await redis.exists(queueKeys.key(name, `${late}:lock`)), 0, "nor locked");
  });

  it("answers a job whose finish, sent on the blocking connection, is cut by the worker closing: what was written still reaches Redis", async () => {
    const name = "cut";
    const list = `${keys.repliesPrefix}cut`;
    const { w } = worker(name, async (data) => answer(data));
    await w.waitUntilReady();
    const blocking = await (w as unknown as { backend: { blockingClient: Promise<{ evalsha(...args: unknown[]): Promise<unknown> }> } }).backend.blockingClient;
    const activeKey = queueKeys.key(name, "active");
    let cut = 0;
    const evalsha = blocking.evalsha.bind(blocking);
    blocking.evalsha = (...args: unknown[]) => {
      const sent = evalsha(...args);
      // The finish (its first key is the active list) is on its way: close the worker now, which cuts this connection.
      if (args[2] === activeKey && cut++ === 0) void w.close();
      return sent;
    };
    const [id] = await addJobs(name, 1, list);
    await waitFor("the worker to close", () => (w as unknown as { closed?: boolean }).closed === true, { timeoutMs: 10_000 });
    assert.equal(cut, 1, "the finish went on the blocking connection, and the close cut it");
    assert.equal(await redis.llen(list), 1, "the job was answered");
    assert.equal(await redis.exists(queueKeys.key(name, String(id)), queueKeys.key(name, `${id}:lock`)), 0, "and completed: job and lock removed");
    assert.equal(await redis.llen(activeKey), 0, "nothing left active");
  });

  it("finds every internal it needs in the installed BullMQ; lacking one, the worker runs BullMQ's own loop, said once, loudly", async () => {
    lines.length = 0;
    const plainName = "plain-loop";
    const complete = worker("complete-loop", async (data) => answer(data));
    assert.deepEqual(missingLoopInternals(complete.w), []);
    assert.ok(complete.raised, "installed");
    assert.ok(Object.hasOwn(complete.w, "mainLoop"), "its own loop in place");

    const list = `${keys.repliesPrefix}plain-loop`;
    const plain = worker(plainName, async (data) => answer(data), { lacking: "processJob" });
    assert.equal(plain.raised, undefined, "not installed");
    assert.ok(!Object.hasOwn(plain.w, "mainLoop"), "BullMQ's own loop left in place");
    const fallbacks = lines.filter((l) => l.feature === "the lean main loop");
    assert.equal(fallbacks.length, 1, `logged once: ${JSON.stringify(lines)}`);
    assert.equal(fallbacks[0]?.level, 50, "as an error");
    assert.deepEqual(fallbacks[0]?.missing, ["processJob"]);
    await addJobs(plainName, 2, list);
    await waitFor("BullMQ's loop to answer both jobs", async () => (await redis.llen(list)) === 2);
  });
});
