/**
 * Dynamic batching end to end: concurrent requests to a batched handler reach
 * it in batches no larger than maxBatchSize and mostly larger than one, every
 * caller gets the answer to its own input, over HTTP and through handles, and
 * a userConfig change resizes batches in place.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { Connection } from "../../src/api/connection.js";
import { deployment } from "../../src/api/deployment.js";
import type { DeploymentSpecInput } from "../../src/spec/deployment-spec.js";
import { httpRequest, TestCluster } from "../helpers/cluster.js";
import { waitFor } from "../helpers/wait.js";

interface Answer {
  input: number;
  batchSize: number;
  maxBatchSize?: number;
  pid?: number;
}

const batched = (maxBatchSize: number): DeploymentSpecInput => ({
  name: "batched",
  import: "batched.ts#Batched",
  version: "1",
  userConfig: { maxBatchSize },
  maxConcurrentQueries: 100,
  actorOptions: { numCpus: 0.5 },
});

async function post(cluster: TestCluster, n: number): Promise<Answer> {
  const res = await httpRequest(cluster.url("/batched"), { method: "POST", body: JSON.stringify({ n }), headers: { "content-type": "application/json" } });
  assert.equal(res.status, 200, res.body);
  return JSON.parse(res.body) as Answer;
}

function checkBatches(answers: Answer[], inputs: number[], maxBatchSize: number): number {
  assert.deepEqual(
    answers.map((a) => a.input),
    inputs,
    "every caller got the answer to its own input",
  );
  const sizes = answers.map((a) => a.batchSize);
  assert.ok(Math.max(...sizes) <= maxBatchSize, `no batch above ${maxBatchSize}: ${sizes.join(",")}`);
  return sizes.reduce((a, b) => a + b, 0) / sizes.length;
}

describe("dynamic batching end to end", () => {
  let cluster: TestCluster;
  let conn: Connection;

  before(async () => {
    cluster = await TestCluster.start({ label: "batching", hosts: [{ cpus: 2 }] });
    conn = new Connection({ redis: cluster.redisUrl, namespace: cluster.namespace });
    await cluster.deploy([batched(8), { name: "direct", import: "batched.ts#direct", actorOptions: { numCpus: 0.5 } }]);
  });

  after(async () => {
    await conn?.close();
    await cluster?.stop();
  });

  it("groups 64 concurrent HTTP requests into batches of at most 8, well above 1 on average, each caller its own answer", async () => {
    const inputs = Array.from({ length: 64 }, (_, i) => i * 7 + 1);
    const answers = await Promise.all(inputs.map((n) => post(cluster, n)));
    // Each request reports the size of the batch it ran in: a batch of k is seen k times, so this mean leans to the larger batches.
    const mean = checkBatches(answers, inputs, 8);
    assert.ok(mean >= 3, `requests ran in batches of ${mean.toFixed(2)} on average`);
  });

  it("batches requests sent through a deployment handle, each caller its own answer", async () => {
    const handle = deployment(batched(8), conn).handle();
    const inputs = Array.from({ length: 32 }, (_, i) => 1000 + i);
    const answers = await Promise.all(inputs.map((n) => handle.call<Answer>({ n })));
    const mean = checkBatches(answers, inputs, 8);
    assert.ok(mean >= 2, `handle calls ran in batches of ${mean.toFixed(2)} on average`);
  });

  it("serves a batched function as the handler itself, which gets the HTTP requests of a batch", async () => {
    const inputs = Array.from({ length: 24 }, (_, i) => i);
    const answers = await Promise.all(
      inputs.map(async (n) => {
        const res = await httpRequest(cluster.url(`/direct?n=${n}`));
        assert.equal(res.status, 200, res.body);
        return JSON.parse(res.body) as Answer;
      }),
    );
    const mean = checkBatches(answers, inputs, 8);
    assert.ok(mean > 1, `requests ran in batches of ${mean.toFixed(2)} on average`);
  });

  it("resizes batches in place when userConfig changes: same replica process, batches of at most the new size", async () => {
    const before = await post(cluster, 1);
    assert.equal(before.maxBatchSize, 8);
    await cluster.deploy([batched(2)]);
    await waitFor("the replica to answer with maxBatchSize 2", async () => (await post(cluster, 2)).maxBatchSize === 2, { timeoutMs: 15_000 });
    const inputs = Array.from({ length: 32 }, (_, i) => 500 + i);
    const answers = await Promise.all(inputs.map((n) => post(cluster, n)));
    checkBatches(answers, inputs, 2);
    assert.ok(answers.every((a) => a.pid === before.pid), "the same replica process answered, without a restart");
    assert.ok(answers.some((a) => a.batchSize === 2), "requests still shared batches");
  });
});
