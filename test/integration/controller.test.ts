/**
 * The controller on the real Redis, without hosts: what one leader writes in
 * its fenced apply (assignments, the user-facing status, its own record), and
 * a second controller taking over from what Redis holds.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { pino } from "pino";
import { applyDeployments } from "../../src/client/deployment-store.js";
import { Controller } from "../../src/controller/controller.js";
import { parseControllerOptions } from "../../src/controller/controller-options.js";
import { Keys } from "../../src/shared/keys.js";
import type { ControllerRecord, DeploymentStatusRecord, ReplicaAssignment } from "../../src/shared/records.js";
import { parseDeploymentSpec } from "../../src/spec/deployment-spec.js";
import { cleanupNamespace, REDIS_URL, testNamespace, testRedis } from "../helpers/redis.js";
import { waitFor } from "../helpers/wait.js";

describe("controller", () => {
  const namespace = testNamespace("ctl");
  const keys = new Keys(namespace);
  const redis = testRedis();
  const controllers: Controller[] = [];
  const start = async (id: string): Promise<Controller> => {
    const c = new Controller(parseControllerOptions({ id, redisUrl: REDIS_URL, namespace, tickMs: 50, leaseTtlMs: 1000 }), pino({ level: "silent" }));
    controllers.push(c);
    await c.start();
    return c;
  };
  after(async () => {
    for (const c of controllers) await c.stop();
    redis.disconnect();
    await cleanupNamespace(namespace);
  });

  it("writes pending replicas with a structured reason, a status with counts and its own record, and a new leader takes over without adding replicas", async () => {
    const first = await start("c1");
    await applyDeployments(redis, keys, [parseDeploymentSpec({ name: "app", import: "app.ts", numReplicas: 2 })]);
    const status = await waitFor("a status of app", async () => {
      const raw = await redis.hget(keys.deploymentStatus, "app");
      return raw ? (JSON.parse(raw) as DeploymentStatusRecord) : undefined;
    }, { timeoutMs: 10_000 });
    assert.equal(status.status, "UPDATING");
    assert.equal(status.message, "0/2 replicas running the current version; 2 pending: no live hosts");
    assert.deepEqual([status.targetReplicas, status.runningReplicas, status.updatedReplicas], [2, 0, 0]);
    const assignments = Object.values(await redis.hgetall(keys.replicas)).map((v) => JSON.parse(v) as ReplicaAssignment);
    assert.equal(assignments.length, 2);
    for (const a of assignments) assert.deepEqual([a.host, a.pendingReason], [null, { kind: "no-hosts" }]);
    const memory = JSON.parse((await redis.hget(keys.controllerRecords, "app")) ?? "null") as ControllerRecord | null;
    assert.deepEqual(memory, { codeVersion: status.codeVersion, failures: 0, retryAt: 0, target: 2 });

    await first.stop();
    await start("c2");
    const resumed = await waitFor("the new leader to write the status", async () => {
      const raw = await redis.hget(keys.deploymentStatus, "app");
      const st = raw ? (JSON.parse(raw) as DeploymentStatusRecord) : undefined;
      return st && st.updatedAt > status.updatedAt && (await redis.get(keys.leaderLease)) === "c2" ? st : undefined;
    }, { timeoutMs: 10_000 });
    assert.equal(resumed.message, status.message);
    const ids = Object.keys(await redis.hgetall(keys.replicas)).sort();
    assert.deepEqual(ids, assignments.map((a) => a.id).sort(), "the same replicas, none added");
  });
});
