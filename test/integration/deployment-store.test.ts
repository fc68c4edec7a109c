/** Desired state on the real Redis: atomic applies, versions, no-op redeploys, deletes. */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { applyDeployments, deleteDeployment, getDeployment } from "../../src/client/deployment-store.js";
import { FlotillaError } from "../../src/errors.js";
import { Keys } from "../../src/shared/keys.js";
import { parseDeploymentSpec } from "../../src/spec/deployment-spec.js";
import { cleanupNamespace, testNamespace, testRedis } from "../helpers/redis.js";

describe("deployment store", () => {
  const namespace = testNamespace("store");
  const keys = new Keys(namespace);
  const redis = testRedis();
  after(async () => {
    redis.disconnect();
    await cleanupNamespace(namespace);
  });

  it("keeps the code version for the same explicit version and spec, and makes a new one otherwise", async () => {
    const v1 = parseDeploymentSpec({ name: "a", import: "a.ts", version: "1" });
    const [first] = await applyDeployments(redis, keys, [v1]);
    assert.equal(first?.outcome, "created");
    const before = await getDeployment(redis, keys, "a");
    const [same] = await applyDeployments(redis, keys, [v1]);
    assert.deepEqual(same, { name: "a", outcome: "unchanged", generation: 1, rollout: false });

    const [config] = await applyDeployments(redis, keys, [parseDeploymentSpec({ name: "a", import: "a.ts", version: "1", userConfig: { t: 1 } })]);
    assert.equal(config?.rollout, false, "a userConfig change is not a rolling update");
    const afterConfig = await getDeployment(redis, keys, "a");
    assert.equal(afterConfig?.codeVersion, before?.codeVersion);
    assert.notEqual(afterConfig?.configVersion, before?.configVersion);

    const [env] = await applyDeployments(redis, keys, [parseDeploymentSpec({ name: "a", import: "a.ts", version: "1", actorOptions: { env: { X: "1" } } })]);
    assert.equal(env?.rollout, true, "an actorOptions change restarts replicas even with the same version");

    const unversioned = parseDeploymentSpec({ name: "b", import: "b.ts" });
    await applyDeployments(redis, keys, [unversioned]);
    const b1 = await getDeployment(redis, keys, "b");
    const [again] = await applyDeployments(redis, keys, [unversioned]);
    assert.equal(again?.rollout, true, "without a version every deploy is a new version");
    assert.notEqual((await getDeployment(redis, keys, "b"))?.codeVersion, b1?.codeVersion);
  });

  it("applies several deployments all or nothing and refuses a route another deployment owns", async () => {
    await assert.rejects(
      applyDeployments(redis, keys, [parseDeploymentSpec({ name: "c", import: "c.ts" }), parseDeploymentSpec({ name: "d", import: "d.ts", routePrefix: "/a" })]),
      (err: unknown) => err instanceof FlotillaError && err.code === "INVALID_SPEC" && /'\/a' is already the route of deployment 'a'/.test(err.message),
    );
    assert.equal(await getDeployment(redis, keys, "c"), undefined, "nothing of the refused apply was written");
  });

  it("deletes a deployment and its request total, and says whether it existed", async () => {
    await redis.hset(keys.requestsTotal, "b", 12, "a", 5);
    assert.equal(await deleteDeployment(redis, keys, "b"), true);
    assert.deepEqual(await redis.hgetall(keys.requestsTotal), { a: "5" }, "only b's total is gone");
    assert.equal(await deleteDeployment(redis, keys, "b"), false);
    assert.equal(await getDeployment(redis, keys, "b"), undefined);
  });

  it("stamps every record it writes and bumps the deployments' version, on delete too", async () => {
    const spec = parseDeploymentSpec({ name: "s", import: "s.ts", version: "1" });
    const version0 = Number(await redis.get(keys.deploymentsVersion));
    await applyDeployments(redis, keys, [spec]);
    const stamp1 = await redis.hget(keys.deploymentGenerations, "s");
    assert.ok(stamp1, "a new record has a stamp");
    assert.equal(Number(await redis.get(keys.deploymentsVersion)), version0 + 1);
    await applyDeployments(redis, keys, [spec]);
    assert.equal(Number(await redis.get(keys.deploymentsVersion)), version0 + 1, "an unchanged apply writes nothing");
    await applyDeployments(redis, keys, [parseDeploymentSpec({ name: "s", import: "s.ts", version: "2" })]);
    const stamp2 = await redis.hget(keys.deploymentGenerations, "s");
    assert.ok(stamp2 && stamp2 !== stamp1, "an update changes the stamp");
    assert.equal(Number(await redis.get(keys.deploymentsVersion)), version0 + 2);
    assert.equal(await deleteDeployment(redis, keys, "s"), true);
    assert.equal(await redis.hget(keys.deploymentGenerations, "s"), null, "the stamp goes with the record");
    assert.equal(Number(await redis.get(keys.deploymentsVersion)), version0 + 3);
  });
});
