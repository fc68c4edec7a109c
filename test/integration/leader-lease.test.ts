/** The leader lease on the real Redis: one holder at a time, takeover after expiry, fenced writes. */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { LeaderLease } from "../../src/controller/leader-lease.js";
import { Keys } from "../../src/shared/keys.js";
import { cleanupNamespace, testNamespace, testRedis } from "../helpers/redis.js";
import { waitFor } from "../helpers/wait.js";

describe("leader lease", () => {
  const namespace = testNamespace("lease");
  const keys = new Keys(namespace);
  const redis = testRedis();
  after(async () => {
    redis.disconnect();
    await cleanupNamespace(namespace);
  });

  it("lets one controller lead, keeps it while it renews, and hands over once it stops renewing", async () => {
    const a = new LeaderLease(redis, keys.leaderLease, "a", 300);
    const b = new LeaderLease(redis, keys.leaderLease, "b", 300);
    assert.equal(await a.tryAcquire(), true);
    assert.equal(await b.tryAcquire(), false);
    assert.equal(await a.tryAcquire(), true, "renewal by the holder");
    assert.equal(await a.holder(), "a");
    await waitFor("b to take the lease after a stops renewing", () => b.tryAcquire(), { timeoutMs: 2000, intervalMs: 50 });
    assert.equal(await a.tryAcquire(), false, "a deposed leader does not get it back while b renews");
    await b.release();
    assert.equal(await b.holder(), null);
  });

  it("applies fenced writes only while holding the lease", async () => {
    const a = new LeaderLease(redis, keys.leaderLease, "a", 5000);
    const b = new LeaderLease(redis, keys.leaderLease, "b", 5000);
    assert.equal(await a.tryAcquire(), true);
    assert.equal(await a.fencedApply([["HSET", keys.replicas, "r1", "{}"]]), true);
    assert.equal(await b.fencedApply([["HSET", keys.replicas, "r2", "{}"], ["HDEL", keys.replicas, "r1"]]), false);
    assert.deepEqual(await redis.hkeys(keys.replicas), ["r1"], "the non-leader's ops were not applied, not even partly");
    await a.release();
  });

  it("applies guarded writes only while holding the lease and while every guard holds", async () => {
    const a = new LeaderLease(redis, keys.leaderLease, "a", 5000);
    const b = new LeaderLease(redis, keys.leaderLease, "b", 5000);
    assert.equal(await a.tryAcquire(), true);
    const key = keys.revisions("g");
    await redis.hset(key, "next", "3");
    assert.equal(await a.fencedApplyIf([[key, "next", "2"]], [["HSET", key, "next", "4"], ["HSET", keys.deployments, "g", "{}"]]), "stale");
    assert.equal(await redis.hget(key, "next"), "3", "a stale guard writes nothing");
    assert.equal(await redis.hexists(keys.deployments, "g"), 0);
    assert.equal(await a.fencedApplyIf([[key, "missing", "x"]], [["HSET", key, "next", "4"]]), "stale", "an absent field holds no value");
    assert.equal(await b.fencedApplyIf([[key, "next", "3"]], [["HSET", key, "next", "4"]]), "not-leader");
    assert.equal(await a.fencedApplyIf([[key, "next", "3"]], [["HSET", key, "next", "4"], ["HSET", keys.deployments, "g", "{}"]]), "applied");
    assert.deepEqual([await redis.hget(key, "next"), await redis.hget(keys.deployments, "g")], ["4", "{}"]);
    await a.release();
  });
});
