/**
 * The leader controller collects runtimeEnv packages from the real Redis:
 * a package neither a record nor a kept revision references goes; the
 * current package, the one the previous code version ran, and those of the
 * revisions a rollback could bring back stay. A standby never
 * collects.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { pino } from "pino";
import { applyDeployments } from "../../src/client/deployment-store.js";
import { Controller } from "../../src/controller/controller.js";
import { parseControllerOptions } from "../../src/controller/controller-options.js";
import { PackageGarbageCollector } from "../../src/controller/package-gc.js";
import { PackageStore } from "../../src/runtime-env/package-store.js";
import { Keys } from "../../src/shared/keys.js";
import type { DeploymentRecord } from "../../src/shared/records.js";
import { parseDeploymentSpec } from "../../src/spec/deployment-spec.js";
import { cleanupNamespace, REDIS_URL, testNamespace, testRedis } from "../helpers/redis.js";
import { waitFor } from "../helpers/wait.js";

describe("package garbage collection by the leader", () => {
  const namespace = testNamespace("pkggc");
  const keys = new Keys(namespace);
  const redis = testRedis();
  const store = new PackageStore(redis, keys);
  const log = pino({ level: "silent" });
  let controller: Controller | undefined;
  after(async () => {
    await controller?.stop();
    redis.disconnect();
    await cleanupNamespace(namespace);
  });

  it("removes unreferenced packages and keeps the current, the previous and the kept revisions' ones of each deployment", async () => {
    const [first, second, third, orphan, oldest, middle, newest] = await Promise.all(
      ["v1", "v2", "v3", "orphan", "b1", "b2", "b3"].map((text) => store.upload(Buffer.from(`package ${text}`))),
    );
    assert.ok(first && second && third && orphan && oldest && middle && newest);
    const spec = parseDeploymentSpec({ name: "app", import: "model.ts", runtimeEnv: { workingDir: "." } });
    // Two revisions kept: the first package's revision is trimmed away, so nothing references it any more.
    for (const pkg of [first, second, third]) await applyDeployments(redis, keys, [spec], Date.now(), { packages: new Map([["app", pkg]]), keep: 2 });
    // Ten kept (the default): the oldest package is referenced by revision 1 alone, and stays.
    const other = parseDeploymentSpec({ name: "b", import: "model.ts", runtimeEnv: { workingDir: "." } });
    for (const pkg of [oldest, middle, newest]) await applyDeployments(redis, keys, [other], Date.now(), { packages: new Map([["b", pkg]]) });
    const rec = JSON.parse((await redis.hget(keys.deployments, "app")) ?? "null") as DeploymentRecord;
    assert.deepEqual([rec.runtimeEnv?.hash, rec.previousRuntimeEnv?.hash], [third.hash, second.hash]);

    // Not the leader: nothing is collected.
    const standby = new PackageGarbageCollector(redis, keys, log, () => false, { intervalMs: 60_000, graceMs: 0 });
    standby.start();
    await standby.runNow();
    await standby.stop();
    assert.equal((await store.list()).length, 7);

    controller = new Controller(parseControllerOptions({ id: "gc1", redisUrl: REDIS_URL, namespace, tickMs: 50, leaseTtlMs: 1000, packageGcIntervalMs: 100, packageGcGraceMs: 0 }), log);
    await controller.start();
    const left = await waitFor("the leader to collect", async () => {
      const hashes = await store.list();
      return hashes.length === 5 ? hashes : undefined;
    }, { timeoutMs: 10_000, describe: () => store.list() });
    assert.deepEqual(left, [third.hash, second.hash, oldest.hash, middle.hash, newest.hash].sort(), "current, previous and kept revisions' packages stay");
    assert.equal(await store.meta(orphan.hash), undefined);
    assert.equal(await redis.exists(keys.packageChunks(first.hash)), 0, "its chunks went too");
  });
});
