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

  it("deletes a deployment and says whether it existed", async () => {
    assert.equal(await deleteDeployment(redis, keys, "b"), true);
    assert.equal(await deleteDeployment(redis, keys, "b"), false);
    assert.equal(await getDeployment(redis, keys, "b"), undefined);
  });
});
