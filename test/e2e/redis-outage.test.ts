/**
 * End to end against a private Redis (AOF, fsync always) that the test stops
 * and restarts: routers answer 503 + Retry-After at once while Redis is away,
 * every process reconnects by itself, and requests accepted before the outage
 * (queued, with no replica to run them) survive the restart and are answered.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Connection } from "../../src/api/connection.js";
import { getHandle } from "../../src/api/deployment.js";
import { httpRequest, TestCluster } from "../helpers/cluster.js";
import { freePort, PrivateRedis } from "../helpers/private-redis.js";
import { waitFor } from "../helpers/wait.js";

/** How long Redis stays away in the first test. */
const OUTAGE_MS = 4000;

function assertAllAlive(cluster: TestCluster): void {
  for (const p of cluster.processes) {
    assert.equal(p.child.exitCode, null, `${p.name} exited with code ${p.child.exitCode}; last logs: ${p.logs.slice(-5).join("\n")}`);
    assert.equal(p.child.signalCode, null, `${p.name} was killed by ${p.child.signalCode}`);
  }
}

describe("Redis outage", () => {
  let redis: PrivateRedis;
  let cluster: TestCluster;
  let dir: string;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "flotilla-redis-outage-"));
    redis = new PrivateRedis(await freePort(), dir);
    await redis.start();
    cluster = await TestCluster.start({ label: "redis-outage", redisUrl: redis.url, hosts: [{ cpus: 4 }] });
  });

  after(async () => {
    await cluster?.stop().catch(() => undefined);
    await redis?.stop().catch(() => redis.kill());
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("answers 503 with Retry-After at once while Redis is down, and serves again within 5 s of its return, no process lost", async () => {
    await cluster.deploy([{ name: "echo", import: "echo.ts", version: "1", numReplicas: 1, actorOptions: { numCpus: 0.25 } }]);
    const [replica] = (await cluster.waitForReplicas("echo", 1)).replicas;
    assert.ok(replica?.pid);
    const ok = await httpRequest(cluster.url("/echo/before"));
    assert.equal(ok.status, 200, ok.body);

    const stoppedAt = await redis.stop();
    // Probe every 100 ms through an outage of ~4 s (longer than the 3 s leader lease and the 1 s reconnect back-off cap).
    const latencies: number[] = [];
    for (let i = 0; Date.now() - stoppedAt < OUTAGE_MS; i++) {
      const started = performance.now();
      const res = await httpRequest(cluster.url(`/echo/during-${i}`), { signal: AbortSignal.timeout(5000) });
      latencies.push(Math.round(performance.now() - started));
      assert.equal(res.status, 503, res.body);
      assert.equal(res.headers.get("retry-after"), "1");
      assert.equal(JSON.parse(res.body).error.code, "REDIS_UNAVAILABLE");
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(latencies.length >= 10, `${latencies.length} probes`);
    assert.ok(Math.max(...latencies) < 1000, `503 latencies ${latencies.join(", ")} ms`);

    const restartedAt = await redis.start();
    const back = await waitFor(
      "the router to answer 200 again",
      async () => {
        const res = await httpRequest(cluster.url("/echo/after"), { signal: AbortSignal.timeout(5000) });
        return res.status === 200 ? { at: Date.now(), body: res.body } : undefined;
      },
      { timeoutMs: 5000, intervalMs: 50 },
    );
    console.log(
      `# measured: ${latencies.length} requests while Redis was down, all 503 REDIS_UNAVAILABLE + Retry-After: 1, latency max ${Math.max(...latencies)} ms, median ${[...latencies].sort((a, b) => a - b)[latencies.length >> 1]} ms (outage ${restartedAt - stoppedAt} ms); ` +
        `first 200 ${back.at - restartedAt} ms after Redis answered PING again`,
    );
    assert.equal(JSON.parse(back.body).pid, replica.pid, "answered by the same replica process");
    assertAllAlive(cluster);
    const d = await cluster.waitForReplicas("echo", 1);
    assert.equal(d.replicas[0]?.id, replica.id);
    assert.equal(d.replicas[0]?.pid, replica.pid, "the replica process was not replaced");
  });

  it("keeps requests queued for a deployment at 0 replicas through a Redis restart, and answers them once scaled to 1", async () => {
    const spec = { name: "parked", import: "echo.ts", version: "1", actorOptions: { numCpus: 0.25 } };
    await cluster.deploy([{ ...spec, numReplicas: 0 }]);
    await cluster.waitForReplicas("parked", 0);

    const conn = new Connection({ redis: cluster.redisUrl, namespace: cluster.namespace });
    try {
      const handle = getHandle("parked", conn);
      const httpAnswers = [0, 1, 2].map((i) => httpRequest(cluster.url(`/parked/q${i}`), { signal: AbortSignal.timeout(60_000) }));
      const callAnswers = [0, 1].map((i) => handle.call<{ payload: unknown; pid: number }>({ n: i }, { timeoutMs: 30_000 }));
      const settled = Promise.allSettled([...httpAnswers, ...callAnswers]);
      await waitFor(
        "5 requests waiting in the queue",
        async () => (await cluster.deployment("parked"))?.queue.waiting === 5,
        { timeoutMs: 10_000, describe: () => cluster.deployment("parked") },
      );

      const stoppedAt = await redis.stop();
      const restartedAt = await redis.start();
      const d = await waitFor("the queue to be back after the restart", async () => {
        const now = await cluster.deployment("parked");
        return now?.queue.waiting === 5 ? now : undefined;
      }, { timeoutMs: 10_000, describe: () => cluster.deployment("parked") });
      assert.equal(d.replicas.length, 0);

      const scaledAt = Date.now();
      await cluster.deploy([{ ...spec, numReplicas: 1 }]);
      const results = await settled;
      const answeredAt = Date.now();
      console.log(`# measured: Redis restart took ${restartedAt - stoppedAt} ms; 5 parked requests answered ${answeredAt - scaledAt} ms after scaling to 1`);

      for (const [i, r] of results.slice(0, 3).entries()) {
        assert.equal(r.status, "fulfilled", String((r as PromiseRejectedResult).reason));
        const res = (r as PromiseFulfilledResult<{ status: number; body: string }>).value;
        assert.equal(res.status, 200, res.body);
        assert.equal(JSON.parse(res.body).subPath, `/q${i}`);
      }
      for (const [i, r] of results.slice(3).entries()) {
        assert.equal(r.status, "fulfilled", String((r as PromiseRejectedResult).reason));
        assert.deepEqual((r as PromiseFulfilledResult<{ payload: unknown }>).value.payload, { n: i });
      }
      await waitFor("the queue to be empty", async () => {
        const q = (await cluster.deployment("parked"))?.queue;
        return q?.waiting === 0 && q.active === 0;
      });
      assertAllAlive(cluster);
    } finally {
      await conn.close();
    }
  });
});
