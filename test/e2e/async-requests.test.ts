/**
 * Async requests end to end: `Prefer: respond-async` answers 202 at once; the
 * poll shows running with the handler's progress, then the result; a replica
 * killed and a router stopped in between lose nothing (another router
 * answers); a cancelled queued request never runs and a cancelled running one
 * has its signal aborted; maxQueuedRequests applies; an expired result is gone
 * from Redis; handles submit and read results.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Connection } from "../../src/api/connection.js";
import { getHandle } from "../../src/api/deployment.js";
import { FlotillaError } from "../../src/errors.js";
import type { AsyncRequestView } from "../../src/queue/async-requests.js";
import { httpRequest, TestCluster } from "../helpers/cluster.js";
import { waitFor } from "../helpers/wait.js";

const ASYNC = { prefer: "wait=5, respond-async" };

/**
 * A process's first fetch() loads Node's HTTP client, and its first POST
 * with a body compiles more of it (hundreds of ms on a loaded machine): done
 * once, against a server of the test's own, so that the timed requests
 * measure the router.
 */
async function warmFetch(): Promise<void> {
  const server = http.createServer((_req, res) => res.end("ok"));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  try {
    await httpRequest(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`, { method: "POST", headers: ASYNC, body: "{}" });
  } finally {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

describe("async requests end to end", () => {
  let cluster: TestCluster;
  let conn: Connection;
  let dir: string;
  let log: string;

  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "flotilla-async-"));
    log = path.join(dir, "calls.log");
    cluster = await TestCluster.start({ label: "async", hosts: [{ cpus: 5 }], routers: 2 });
    conn = new Connection({ redis: cluster.redisUrl, namespace: cluster.namespace });
    await warmFetch();
    await cluster.deploy([
      { name: "job", import: "async-job.ts#default", numReplicas: 1, maxConcurrentQueries: 8, actorOptions: { numCpus: 1 } },
      { name: "single", import: "async-job.ts#default", numReplicas: 1, maxConcurrentQueries: 1, maxQueuedRequests: 1, actorOptions: { numCpus: 1 } },
      { name: "brief", import: "async-job.ts#default", numReplicas: 1, asyncResultTtlS: 2, actorOptions: { numCpus: 1 } },
      { name: "batched", import: "batched.ts#Batched", userConfig: { maxBatchSize: 8 }, maxConcurrentQueries: 100, actorOptions: { numCpus: 0.5 } },
    ]);
  });

  after(async () => {
    await conn?.close();
    await cluster?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const calls = (): string[] => (existsSync(log) ? readFileSync(log, "utf8").split("\n").filter(Boolean) : []);

  async function submit(route: string, query: Record<string, string | number>, router = 0): Promise<{ id: string; ms: number; location: string | null }> {
    const qs = new URLSearchParams(Object.entries({ log, ...query }).map(([k, v]) => [k, String(v)])).toString();
    const t0 = performance.now();
    const res = await httpRequest(cluster.url(`/${route}?${qs}`, router), { method: "POST", headers: ASYNC, body: "{}" });
    const ms = performance.now() - t0;
    assert.equal(res.status, 202, res.body);
    const body = JSON.parse(res.body) as { id: string; status: string };
    assert.equal(body.status, "queued");
    assert.equal(res.headers.get("preference-applied"), "respond-async");
    return { id: body.id, ms, location: res.headers.get("location") };
  }

  async function poll(id: string, router = 0, wait = 0): Promise<AsyncRequestView> {
    const res = await httpRequest(cluster.url(`/-/requests/${id}${wait ? `?wait=${wait}` : ""}`, router), { signal: AbortSignal.timeout(90_000) });
    assert.equal(res.status, 200, res.body);
    return JSON.parse(res.body) as AsyncRequestView;
  }

  async function until(id: string, what: string, check: (v: AsyncRequestView) => boolean, router = 0, timeoutMs = 60_000): Promise<AsyncRequestView> {
    let last: AsyncRequestView | undefined;
    return waitFor(`request ${id} ${what}`, async () => {
      last = await poll(id, router, 2);
      return check(last) ? last : undefined;
    }, { timeoutMs, describe: () => ({ last, logs: cluster.logTail(8) }) });
  }

  it("answers a 20 s request 202 at once; the poll shows running with progress, then succeeded with the body", async () => {
    const { id, ms, location } = await submit("job", { ms: 20_000, steps: 4, tag: "long" });
    console.log(`# 202 answered in ${ms.toFixed(1)} ms`);
    assert.ok(ms < 1000, `202 in ${ms.toFixed(0)} ms, far below the handler's 20 s`);
    assert.equal(location, `/-/requests/${id}`);
    assert.match(id, /^[0-9a-f-]{36}$/);
    const running = await until(id, "to report progress while running", (v) => v.status === "running" && (v.progress as { step: number } | null)?.step === 1, 1);
    assert.deepEqual(running.progress, { step: 1, of: 4 });
    assert.equal(running.deployment, "job");
    assert.ok(running.startedAt !== null && running.startedAt >= running.createdAt);
    assert.equal(running.result, null);
    const done = await until(id, "to succeed", (v) => v.status === "succeeded", 0);
    assert.ok(done.result);
    assert.equal(done.result.status, 200);
    assert.match(done.result.headers["content-type"] ?? "", /application\/json/);
    assert.deepEqual({ ...(JSON.parse(done.result.body) as object), pid: 0 }, { tag: "long", steps: 4, pid: 0 });
    assert.ok(done.finishedAt !== null && done.finishedAt - (done.startedAt ?? 0) >= 19_000);
    const warm = await submit("job", { ms: 10, steps: 1, tag: "warm" });
    console.log(`# a later 202 answered in ${warm.ms.toFixed(1)} ms`);
    assert.ok(warm.ms < 1000, `202 in ${warm.ms.toFixed(0)} ms`);
  });

  it("a router started after the deploy answers its first async request 202 at once: its queue is set up when it loads its routes", async () => {
    const port = await cluster.spawnRouter();
    const fresh = cluster.routerPorts.indexOf(port);
    const handle = cluster.processes.find((p) => p.name === `router-${fresh + 1}`);
    assert.ok(handle, "the new router's process");
    try {
      const first = await submit("job", { ms: 20_000, steps: 4, tag: "fresh-first" }, fresh);
      const next = await submit("job", { ms: 20_000, steps: 4, tag: "fresh-next" }, fresh);
      console.log(`# a new router's first 202 in ${first.ms.toFixed(1)} ms, its next in ${next.ms.toFixed(1)} ms`);
      assert.ok(first.ms < 1000, `the first 202 in ${first.ms.toFixed(0)} ms, far below the handler's 20 s`);
      assert.ok(next.ms < 1000, `the next 202 in ${next.ms.toFixed(0)} ms`);
      const running = await until(first.id, "to run with its first progress", (v) => v.status === "running" && v.progress !== null, fresh);
      assert.equal(running.result, null);
      // Cancelled rather than waited for: the 20 s run itself is the first test's.
      for (const { id } of [first, next]) {
        const res = await httpRequest(cluster.url(`/-/requests/${id}`, fresh), { method: "DELETE" });
        assert.equal(res.status, 200, res.body);
        assert.equal((JSON.parse(res.body) as AsyncRequestView).status, "cancelled");
      }
      await waitFor("the first request's handler to see its signal aborted", () => calls().includes("aborted fresh-first"), { timeoutMs: 10_000, describe: calls });
    } finally {
      await cluster.kill(handle);
      cluster.routerPorts.splice(fresh, 1);
    }
  });

  it("drops nothing during a rolling update: requests running and queued meanwhile all succeed", async () => {
    const running = await submit("job", { ms: 4000, steps: 2, tag: "before-update" });
    await until(running.id, "to run", (v) => v.status === "running");
    await cluster.deploy([{ name: "job", import: "async-job.ts#default", version: "2", numReplicas: 1, maxConcurrentQueries: 8, actorOptions: { numCpus: 1 } }], { wait: false });
    const during = await submit("job", { ms: 500, steps: 1, tag: "during-update" });
    for (const { id } of [running, during]) {
      const done = await until(id, "to succeed across the update", (v) => v.status === "succeeded", 1, 90_000);
      assert.equal(done.result?.status, 200);
    }
    await waitFor("the update to finish", async () => (await cluster.deployment("job"))?.replicas.every((r) => r.version === "2" && r.state === "running") === true, { timeoutMs: 60_000 });
  });

  it("loses nothing when its replica is killed and its router stops mid-run: another router answers the poll", async () => {
    const { id } = await submit("job", { ms: 6000, steps: 3, tag: "survivor" }, 0);
    await until(id, "to run", (v) => v.status === "running", 0);
    // "running" is recorded before the handler is called: killed in between, it would not have run once yet.
    await waitFor("the handler to have started (its log line)", () => calls().some((l) => l.startsWith("start survivor ")));
    const replica = (await cluster.deployment("job"))?.replicas.find((r) => r.state === "running");
    assert.ok(replica?.pid, "the replica's pid");
    process.kill(replica.pid, "SIGKILL");
    const router0 = cluster.processes.find((p) => p.name === "router-1");
    assert.ok(router0);
    await cluster.kill(router0);
    const done = await until(id, "to succeed on a retry", (v) => v.status === "succeeded", 1, 90_000);
    const answeredBy = (JSON.parse(done.result?.body ?? "{}") as { pid?: number }).pid;
    assert.notEqual(answeredBy, replica.pid, "a new replica ran it again");
    assert.equal(calls().filter((l) => l.startsWith("start survivor ")).length, 2, "run twice: once killed, once to the end");
    // The stopped router's place goes to a new one, which reads it too.
    const port = await cluster.spawnRouter();
    cluster.routerPorts.pop();
    cluster.routerPorts[0] = port;
    const again = await poll(id, 0);
    assert.equal(again.status, "succeeded", "a new router reads it too");
  });

  it("a cancelled queued request never runs, a cancelled running one has its signal aborted, and maxQueuedRequests applies", async () => {
    const a = await submit("single", { ms: 30_000, steps: 30, tag: "A" });
    await until(a.id, "to run", (v) => v.status === "running");
    const b = await submit("single", { ms: 100, steps: 1, tag: "B" });
    assert.equal((await poll(b.id)).status, "queued");
    const refused = await httpRequest(cluster.url(`/single?tag=C`), { method: "POST", headers: ASYNC });
    assert.equal(refused.status, 503, refused.body);
    assert.equal(refused.headers.get("retry-after"), "1");
    assert.equal((JSON.parse(refused.body) as { error: { code: string } }).error.code, "BACKPRESSURE");

    const cancelB = await httpRequest(cluster.url(`/-/requests/${b.id}`), { method: "DELETE" });
    assert.equal(cancelB.status, 200, cancelB.body);
    assert.equal((JSON.parse(cancelB.body) as AsyncRequestView).status, "cancelled");
    const cancelA = await httpRequest(cluster.url(`/-/requests/${a.id}`, 1), { method: "DELETE" });
    assert.equal((JSON.parse(cancelA.body) as AsyncRequestView).status, "cancelled");
    await waitFor("A's handler to see its signal aborted", () => calls().includes("aborted A"), { timeoutMs: 10_000 });

    // D is queued behind where B was: once D has run, B would have run before it.
    const d = await submit("single", { ms: 100, steps: 1, tag: "D" });
    await until(d.id, "to succeed", (v) => v.status === "succeeded");
    assert.deepEqual(calls().filter((l) => / [ABD] /.test(`${l} `) && l.startsWith("start")).map((l) => l.split(" ")[1]), ["A", "D"], "B never ran");
    const finalA = await poll(a.id);
    assert.equal(finalA.status, "cancelled", "the aborted handler's answer does not replace the cancel");
    assert.equal(finalA.result, null);
  });

  it("removes an expired result with everything the request stored", async () => {
    const { id } = await submit("brief", { ms: 50, steps: 1, tag: "brief" });
    await until(id, "to succeed", (v) => v.status === "succeeded");
    const stored = async (): Promise<string[]> => {
      const found: string[] = [];
      let cursor = "0";
      do {
        const [next, keys] = await cluster.redis.scan(cursor, "MATCH", `*${cluster.namespace}*`, "COUNT", 1000);
        cursor = next;
        found.push(...keys);
      } while (cursor !== "0");
      // The record, and any job hash of the deployment's queue (`...:{ns/brief}:<job id>`).
      return found.filter((k) => k.includes(id) || /\{[^}]*\/brief\}:\d+(:|$)/.test(k));
    };
    assert.ok((await stored()).some((k) => k.includes(id)), "the record is there while the result is kept");
    await waitFor("the request to leave nothing in Redis", async () => (await stored()).length === 0, { timeoutMs: 15_000, describe: stored });
    const gone = await httpRequest(cluster.url(`/-/requests/${id}`));
    assert.equal(gone.status, 404);
    assert.equal((JSON.parse(gone.body) as { error: { code: string } }).error.code, "NOT_FOUND");
  });

  it("answers 404 for unknown or malformed ids and 400 for a bad wait or method", async () => {
    for (const id of ["nope", "6f1c3a1e-3c1b-4b6a-9d5e-2b7e4c1a0f00", "..%2F..%2Fx", ""]) {
      const res = await httpRequest(cluster.url(`/-/requests/${id}`));
      assert.equal(res.status, 404, `${id}: ${res.body}`);
    }
    const { id } = await submit("job", { ms: 50, steps: 1 });
    const badWait = await httpRequest(cluster.url(`/-/requests/${id}?wait=soon`));
    assert.equal(badWait.status, 400);
    assert.match(badWait.body, /wait/);
    const badMethod = await httpRequest(cluster.url(`/-/requests/${id}`), { method: "PUT" });
    assert.equal(badMethod.status, 400);
  });

  it("handles submit and read results; result() throws TIMEOUT while running and CANCELLED once cancelled", async () => {
    const handle = getHandle("job", conn);
    const id = await handle.submit({ ms: 200, steps: 2, tag: "handle" });
    const value = await handle.result<{ tag: string; steps: number }>(id, { wait: 30 });
    assert.equal(value.tag, "handle");
    assert.equal(value.steps, 2);
    const long = await handle.submit({ ms: 30_000, steps: 3, tag: "handle-long" });
    await assert.rejects(handle.result(long, { wait: 0.2 }), (err: unknown) => err instanceof FlotillaError && err.code === "TIMEOUT" && /still (queued|running)/.test(err.message));
    assert.equal(await handle.cancel(long), "cancelled");
    await assert.rejects(handle.result(long), (err: unknown) => err instanceof FlotillaError && err.code === "CANCELLED");
    await assert.rejects(handle.result("6f1c3a1e-3c1b-4b6a-9d5e-2b7e4c1a0f00"), (err: unknown) => err instanceof FlotillaError && err.code === "NOT_FOUND");
    await assert.rejects(getHandle("missing", conn).submit(1), (err: unknown) => err instanceof FlotillaError && err.code === "NOT_FOUND");
  });

  it("async requests to a batched handler run in batches, each with its own answer", async () => {
    const inputs = Array.from({ length: 24 }, (_, i) => 100 + i);
    const ids = await Promise.all(
      inputs.map(async (n) => {
        const res = await httpRequest(cluster.url("/batched"), { method: "POST", headers: { ...ASYNC, "content-type": "application/json" }, body: JSON.stringify({ n }) });
        assert.equal(res.status, 202, res.body);
        return (JSON.parse(res.body) as { id: string }).id;
      }),
    );
    const answers = await Promise.all(ids.map(async (id) => JSON.parse((await until(id, "to succeed", (v) => v.status === "succeeded")).result?.body ?? "{}") as { input: number; batchSize: number }));
    assert.deepEqual(answers.map((a) => a.input), inputs, "each request got the answer to its own input");
    const sizes = answers.map((a) => a.batchSize);
    assert.ok(Math.max(...sizes) <= 8, sizes.join(","));
    assert.ok(Math.max(...sizes) > 1, `async requests were batched: ${sizes.join(",")}`);
  });

  it("counts async requests by status for the cluster's metrics", async () => {
    const job = await cluster.deployment("job");
    const single = await cluster.deployment("single");
    assert.ok(job?.asyncCounts && single?.asyncCounts, "the status report has the counts");
    assert.ok(job.asyncCounts.queued >= 8 && job.asyncCounts.succeeded >= 6 && job.asyncCounts.cancelled >= 1, JSON.stringify(job.asyncCounts));
    assert.equal(single.asyncCounts.cancelled, 2, JSON.stringify(single.asyncCounts));
    assert.equal(single.asyncCounts.succeeded, 1, JSON.stringify(single.asyncCounts));
  });
});
