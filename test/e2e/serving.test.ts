/**
 * End to end with real processes: function and class deployments over HTTP
 * and as queue messages, errors, routes, model composition.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Queue } from "bullmq";
import { Connection } from "../../src/api/connection.js";
import { deployment, getHandle } from "../../src/api/deployment.js";
import { FlotillaError } from "../../src/errors.js";
import { httpRequest, TestCluster } from "../helpers/cluster.js";
import { testRedis } from "../helpers/redis.js";
import { waitFor } from "../helpers/wait.js";

describe("serving deployments end to end", () => {
  let cluster: TestCluster;
  let conn: Connection;

  before(async () => {
    cluster = await TestCluster.start({ label: "serving", hosts: [{ cpus: 4 }] });
    conn = new Connection({ redis: cluster.redisUrl, namespace: cluster.namespace });
    await cluster.deploy([
      { name: "echo", import: "echo.ts", actorOptions: { numCpus: 0.5 } },
      { name: "counter", import: "counter.ts#Counter", routePrefix: "/api/count", actorOptions: { numCpus: 0.5 } },
      { name: "flaky", import: "flaky.ts", actorOptions: { numCpus: 0.5 } },
      { name: "composed", import: "composed.ts#Composed", actorOptions: { numCpus: 0.5 } },
      { name: "internal", import: "echo.ts", routePrefix: null, actorOptions: { numCpus: 0.5 } },
    ]);
  });

  after(async () => {
    await conn?.close();
    await cluster?.stop();
  });

  it("serves a function deployment and echoes a JSON body, path and query", async () => {
    const res = await httpRequest(cluster.url("/echo/items/7?x=1&x=2&y=z"), { method: "POST", body: JSON.stringify({ hello: "world" }), headers: { "content-type": "application/json" } });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /application\/json/);
    const body = JSON.parse(res.body);
    assert.deepEqual(body.body, { hello: "world" });
    assert.equal(body.method, "POST");
    assert.equal(body.path, "/echo/items/7");
    assert.equal(body.subPath, "/items/7");
    assert.deepEqual(body.query, { x: ["1", "2"], y: "z" });
    assert.ok(res.headers.get("x-flotilla-replica")?.startsWith("echo-"));
  });

  it("serves a class deployment that keeps state between calls, on a nested routePrefix", async () => {
    const first = JSON.parse((await httpRequest(cluster.url("/api/count"))).body);
    const second = JSON.parse((await httpRequest(cluster.url("/api/count/anything"))).body);
    assert.equal(second.pid, first.pid);
    assert.equal(second.count, first.count + 1);
  });

  it("answers 404 with a JSON body for a path no deployment serves", async () => {
    const res = await httpRequest(cluster.url("/nothing-here"));
    assert.equal(res.status, 404);
    assert.equal(JSON.parse(res.body).error.code, "NOT_FOUND");
    // A prefix match must end on a segment boundary.
    assert.equal((await httpRequest(cluster.url("/echoes"))).status, 404);
    // A deployment with routePrefix null has no HTTP route.
    assert.equal((await httpRequest(cluster.url("/internal"))).status, 404);
  });

  it("turns a handler exception into a 500 JSON error, and the replica keeps serving", async () => {
    const bad = await httpRequest(cluster.url("/flaky?fail=1"));
    assert.equal(bad.status, 500);
    const error = JSON.parse(bad.body).error;
    assert.equal(error.code, "HANDLER_ERROR");
    assert.equal(error.message, "asked to fail");
    const good = await httpRequest(cluster.url("/flaky"));
    assert.equal(good.status, 200);
    assert.equal(good.body, "ok");
    assert.equal(good.headers.get("x-flotilla-replica"), bad.headers.get("x-flotilla-replica"));
  });

  it("answers a queue message sent through a deployment handle", async () => {
    const reply = await deployment({ name: "internal", import: "echo.ts" }, conn).handle().call<{ payload: unknown }>({ n: 42 });
    assert.deepEqual(reply.payload, { n: 42 });
  });

  it("rejects a handle call with the handler's error", async () => {
    await assert.rejects(
      getHandle("flaky", conn).call({ query: { fail: "1" } }),
      (err: unknown) => err instanceof FlotillaError && err.code === "HANDLER_ERROR" && err.message === "asked to fail",
    );
  });

  it("serves any BullMQ client that adds a job with the documented shape and reads the return value", async () => {
    const redis = testRedis(cluster.redisUrl);
    const queue = new Queue(`{${cluster.namespace}/internal}`, { connection: redis, prefix: `${cluster.namespace}:q` });
    try {
      const job = await queue.add("request", { kind: "call", payload: { from: "another language" } }, { removeOnComplete: false });
      const done = await waitFor("the job to complete", async () => {
        const state = await queue.getJobState(job.id as string);
        return state === "completed" ? await queue.getJob(job.id as string) : undefined;
      });
      assert.equal(done?.returnvalue.status, 200);
      assert.deepEqual(done?.returnvalue.value.payload, { from: "another language" });
    } finally {
      await queue.close();
      redis.disconnect();
    }
  });

  it("answers a malformed job from a bare BullMQ client 400 INVALID_REQUEST naming the field, and keeps serving", async () => {
    const redis = testRedis(cluster.redisUrl);
    const queue = new Queue(`{${cluster.namespace}/internal}`, { connection: redis, prefix: `${cluster.namespace}:q` });
    const result = async (data: unknown) => {
      const job = await queue.add("request", data, { removeOnComplete: false });
      const done = await waitFor("the job to complete", async () => ((await queue.getJobState(job.id as string)) === "completed" ? await queue.getJob(job.id as string) : undefined));
      return done?.returnvalue;
    };
    try {
      const bad = await result({ kind: "http", http: { method: 5, path: "/" } });
      assert.equal(bad.status, 400);
      assert.equal(bad.error.code, "INVALID_REQUEST");
      assert.equal(bad.error.details.field, "http.method");
      assert.equal((await result({ kind: "call", payload: 1 })).status, 200);
    } finally {
      await queue.close();
      redis.disconnect();
    }
  });

  it("answers 400 INVALID_REQUEST when a handler reads a body that is not JSON as JSON", async () => {
    const res = await httpRequest(cluster.url("/echo/x"), { method: "POST", body: "{not json" });
    assert.equal(res.status, 400, res.body);
    assert.equal(JSON.parse(res.body).error.code, "INVALID_REQUEST");
  });

  it("lets a handler call another deployment through its handle (model composition)", async () => {
    const res = await httpRequest(cluster.url("/composed"), { method: "POST", body: "abc" });
    assert.equal(res.status, 200, res.body);
    const body = JSON.parse(res.body);
    assert.equal(body.composed, true);
    assert.deepEqual(body.inner.payload, { from: "composed", body: "abc" });
  });

  it("drops a deleted deployment's route within a second", async () => {
    await cluster.deploy([{ name: "temp", import: "echo.ts", actorOptions: { numCpus: 0.25 } }]);
    assert.equal((await httpRequest(cluster.url("/temp"))).status, 200);
    await deployment({ name: "temp", import: "echo.ts" }, conn).delete();
    const started = Date.now();
    await waitFor("route /temp to answer 404", async () => (await httpRequest(cluster.url("/temp"))).status === 404, { timeoutMs: 1000, intervalMs: 20 });
    assert.ok(Date.now() - started <= 1000);
    await waitFor("temp's replicas to be gone", async () => (await cluster.deployment("temp")) === undefined && !(await cluster.status()).hosts.some((h) => h.replicas.some((r) => r.startsWith("temp-"))));
  });
});
