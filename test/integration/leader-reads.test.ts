/**
 * The leader reads a deployment's revision history only when it changed:
 * once when the deployment is deployed, again when it is deployed anew, and
 * not on every tick while its rollout is watched. Commands are watched with
 * MONITOR.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { pino } from "pino";
import { applyDeployments } from "../../src/client/deployment-store.js";
import { Controller } from "../../src/controller/controller.js";
import { parseControllerOptions } from "../../src/controller/controller-options.js";
import { Keys } from "../../src/shared/keys.js";
import type { RolloutRecord } from "../../src/shared/records.js";
import { parseDeploymentSpec } from "../../src/spec/deployment-spec.js";
import { Monitor } from "../helpers/monitor.js";
import { cleanupNamespace, REDIS_URL, testNamespace, testRedis } from "../helpers/redis.js";
import { waitFor } from "../helpers/wait.js";

const log = pino({ level: "silent" });

describe("the leader's revision reads", () => {
  const namespace = testNamespace("leaderreads");
  const keys = new Keys(namespace);
  const redis = testRedis();
  let controller: Controller | undefined;
  let monitor: Monitor | undefined;
  after(async () => {
    monitor?.stop();
    await controller?.stop();
    redis.disconnect();
    await cleanupNamespace(namespace);
  });

  it("reads a watched rollout's revisions when they change, not on every tick", async () => {
    const spec = (name: string, version: string) => parseDeploymentSpec({ name, import: "app.js", version, numReplicas: 1 });
    const reads = (name: string): number =>
      (monitor?.commands ?? []).filter((c) => c.args[0]?.toLowerCase() === "hgetall" && c.args[1] === keys.revisions(name)).length;
    monitor = await Monitor.start(REDIS_URL, (c) => c.args[0]?.toLowerCase() === "hgetall" && (c.args[1] ?? "").startsWith(keys.revisions("")));
    let ticks = 0;
    // A long lease: a leader that loses it (its process starved for a lease on a loaded machine) rightly reads everything again when it is back.
    controller = new Controller(parseControllerOptions({ id: "ctl", redisUrl: REDIS_URL, namespace, tickMs: 50, leaseTtlMs: 15_000 }), log, (t) => {
      if (t.ok) ticks++;
    });
    await controller.start();
    await waitFor("the controller to lead", () => controller?.isLeader);
    const ticksAfter = async (what: string, n: number): Promise<void> => {
      const from = ticks;
      await waitFor(`${n} leader ticks ${what}`, () => ticks - from >= n, { describe: () => ({ ticks: ticks - from }) });
    };

    // No host: the replicas wait for one, so both rollouts stay watched (not done) on every tick.
    await applyDeployments(redis, keys, [spec("still", "1"), spec("moving", "1")]);
    await waitFor("the leader to read both histories", () => reads("still") >= 1 && reads("moving") >= 1, { describe: () => ({ still: reads("still"), moving: reads("moving") }) });
    await ticksAfter("after the first reads", 10);
    await monitor.caughtUp(redis);
    const watched = async (name: string): Promise<boolean> => {
      const raw = await redis.hget(keys.rollouts, name);
      return raw !== null && (JSON.parse(raw) as RolloutRecord).done === undefined;
    };
    assert.ok((await watched("still")) && (await watched("moving")), "both rollouts are still watched, so a tick needs their revisions");
    assert.equal(reads("still"), 1, "an unchanged history is read once, not per tick");
    assert.equal(reads("moving"), 1, "an unchanged history is read once, not per tick");

    await applyDeployments(redis, keys, [spec("moving", "2")]);
    await waitFor("the leader to read the new revision", () => reads("moving") >= 2, { describe: () => ({ moving: reads("moving") }) });
    await ticksAfter("after the new revision", 10);
    await monitor.caughtUp(redis);
    assert.equal(reads("moving"), 2, "a new revision is read once");
    assert.equal(reads("still"), 1, "a deploy of another deployment reads nothing of this one");
  });
});
