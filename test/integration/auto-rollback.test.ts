/**
 * Revision outcomes and automatic rollback on the real Redis: a controller
 * without hosts settles outcomes that no client waits for, and rolls back a
 * rollout that cannot finish in time (its replicas can never be placed) in
 * one fenced write; waitForRollout reports a rollout that was rolled back,
 * and waits through UNHEALTHY while a rollback may still come.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { pino } from "pino";
import { applyDeployments, getDeployment, waitForRollout } from "../../src/client/deployment-store.js";
import { readRevisions } from "../../src/client/revisions.js";
import { Controller } from "../../src/controller/controller.js";
import { parseControllerOptions } from "../../src/controller/controller-options.js";
import { FlotillaError } from "../../src/errors.js";
import { Keys } from "../../src/shared/keys.js";
import type { DeploymentStatusRecord } from "../../src/shared/records.js";
import { parseDeploymentSpec, type DeploymentSpecInput } from "../../src/spec/deployment-spec.js";
import { writeStatus } from "../helpers/status-record.js";
import { cleanupNamespace, REDIS_URL, testNamespace, testRedis } from "../helpers/redis.js";
import { waitFor } from "../helpers/wait.js";

const spec = (name: string, extra: Partial<DeploymentSpecInput> = {}) => parseDeploymentSpec({ name, import: "echo.ts", ...extra });

function isCode(code: string, message?: RegExp) {
  return (err: unknown) => err instanceof FlotillaError && err.code === code && (!message || message.test(err.message));
}

describe("automatic rollback with a controller", () => {
  const namespace = testNamespace("autorb");
  const keys = new Keys(namespace);
  const redis = testRedis();
  const controller = new Controller(parseControllerOptions({ id: "c1", redisUrl: REDIS_URL, namespace, tickMs: 50, leaseTtlMs: 2000 }), pino({ level: "silent" }));
  after(async () => {
    await controller.stop();
    redis.disconnect();
    await cleanupNamespace(namespace);
  });

  it("settles a revision's outcome with no client waiting and no history read", async () => {
    await controller.start();
    await applyDeployments(redis, keys, [spec("quiet", { version: "1", numReplicas: 0 })]);
    await waitFor("revision 1 rolled out", async () => (await readRevisions(redis, keys, "quiet"))[0]?.outcome === "rolled out", { timeoutMs: 10_000 });
  });

  it("rolls back a rollout that has not finished within rolloutTimeoutS, and the waiting deploy says so", async () => {
    const policy = { rollbackOnFailure: true, rolloutTimeoutS: 0.5 };
    await applyDeployments(redis, keys, [spec("web", { version: "1", numReplicas: 0, ...policy })]);
    await waitFor("revision 1 rolled out", async () => (await readRevisions(redis, keys, "web"))[0]?.outcome === "rolled out", { timeoutMs: 10_000 });
    // No host: its one replica can never be placed.
    const [v2] = await applyDeployments(redis, keys, [spec("web", { version: "2", numReplicas: 1, ...policy })]);
    await assert.rejects(
      waitForRollout(redis, keys, [v2!], { timeoutMs: 15_000, pollMs: 20 }),
      isCode("ROLLOUT_FAILED", /^rollout of 'web' failed and was rolled back to revision 1: revision 2 failed: not rolled out within 0\.5 s \(0\/1 replicas running it\)$/),
    );
    const record = await getDeployment(redis, keys, "web");
    assert.deepEqual([record?.generation, record?.spec.version, record?.spec.numReplicas, record?.rolledBack?.failedRevision, record?.rolledBack?.to], [3, "1", 0, 2, 1]);
    const status = await waitFor("HEALTHY at generation 3", async () => {
      const raw = await redis.hget(keys.deploymentStatus, "web");
      const st = raw ? (JSON.parse(raw) as DeploymentStatusRecord) : undefined;
      return st?.generation === 3 && st.status === "HEALTHY" ? st : undefined;
    }, { timeoutMs: 10_000 });
    assert.equal(status.message, "rolled back to revision 1: revision 2 failed: not rolled out within 0.5 s (0/1 replicas running it); 0/0 replicas running");
    await waitFor("revision 3 rolled out", async () => (await readRevisions(redis, keys, "web"))[2]?.outcome === "rolled out", { timeoutMs: 10_000 });
    const revisions = await readRevisions(redis, keys, "web");
    assert.deepEqual(revisions.map((r) => [r.revision, r.version, r.outcome, r.rollbackOf ?? null]), [
      [1, "1", "rolled out", null],
      [2, "2", "failed", null],
      [3, "1", "rolled out", 1],
    ]);
    assert.match(revisions[1]?.error ?? "", /not rolled out within 0\.5 s/);
    assert.equal(revisions[2]?.source.user, "controller:c1");
    assert.equal(await redis.hlen(keys.replicas), 0, "the replica that waited for a host is gone");
  });
});

describe("waitForRollout with rollbackOnFailure", () => {
  const namespace = testNamespace("autorb-wait");
  const keys = new Keys(namespace);
  const redis = testRedis();
  after(async () => {
    redis.disconnect();
    await cleanupNamespace(namespace);
  });

  const setStatus = (name: string, generation: number, status: DeploymentStatusRecord["status"], extra: Partial<DeploymentStatusRecord> = {}): Promise<void> =>
    writeStatus(redis, keys, name, generation, status, { failures: 1, ...extra });

  it("waits through UNHEALTHY while a rollback may still come, and fails once the status says none will", async () => {
    const [r] = await applyDeployments(redis, keys, [spec("a", { version: "1", rollbackOnFailure: true })]);
    await setStatus("a", 1, "UNHEALTHY", { lastError: "boom" });
    let unhealthyPolls = 0;
    const onProgress = (list: Array<{ status: DeploymentStatusRecord | undefined }>): void => {
      if (list[0]?.status?.status === "UNHEALTHY") unhealthyPolls++;
    };
    const waiting = waitForRollout(redis, keys, [r!], { timeoutMs: 10_000, pollMs: 20, onProgress });
    let settled = false;
    void waiting.catch(() => undefined).finally(() => (settled = true));
    await waitFor("the waiter to see UNHEALTHY five times", () => unhealthyPolls >= 5, { timeoutMs: 5000, intervalMs: 10 });
    assert.equal(settled, false, "still waiting: the controller may roll it back");
    await setStatus("a", 1, "UNHEALTHY", { lastError: "boom", rolloutFailed: "3 failed start(s); not rolled back: no revision before 1 rolled out" });
    await assert.rejects(waiting, isCode("ROLLOUT_FAILED"));
  });

  it("fails at once on UNHEALTHY without rollbackOnFailure, as before", async () => {
    const [r] = await applyDeployments(redis, keys, [spec("b", { version: "1" })]);
    await setStatus("b", 1, "UNHEALTHY", { lastError: "boom" });
    await assert.rejects(waitForRollout(redis, keys, [r!], { timeoutMs: 2000, pollMs: 20 }), isCode("ROLLOUT_FAILED"));
  });
});
