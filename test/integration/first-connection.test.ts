/**
 * A requester whose first connection is still being made waits for it
 * briefly, also while it retries (as a Redis Cluster client does when its
 * first slot map or ready check fails on a cluster just created): its first
 * request is accepted, not refused with 503 because a retry was under way.
 * Once it has been connected, a lost connection still fails at once.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { RequestClient } from "../../src/client/request-client.js";
import { FlotillaError } from "../../src/errors.js";
import { freePort, PrivateRedis } from "../helpers/private-redis.js";
import { waitFor } from "../helpers/wait.js";

describe("a requester's first connection", () => {
  const dir = mkdtempSync(join(tmpdir(), "flotilla-first-conn-"));
  let redis: PrivateRedis | undefined;
  let client: RequestClient | undefined;
  after(async () => {
    await client?.close().catch(() => undefined);
    await redis?.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  it("is waited for while it retries, then a lost connection fails at once", async () => {
    redis = new PrivateRedis(await freePort(), dir);
    client = new RequestClient({ redisUrl: redis.url, namespace: "first" });
    const connection = client.connection;
    // Nothing listens yet: the first attempt fails and the client retries.
    await waitFor("the first connection attempt to fail", () => connection.status === "reconnecting" || connection.status === "close", { intervalMs: 5 });
    const submitted = client.submit("nobody", { kind: "call", payload: 1 }, { timeoutMs: 500 });
    submitted.catch(() => undefined);
    await redis.start();
    // No replica runs "nobody": an accepted request times out; a refused one is REDIS_UNAVAILABLE.
    await assert.rejects(submitted, (err: unknown) => err instanceof FlotillaError && err.code === "TIMEOUT");

    await redis.kill();
    await waitFor("the client to see Redis gone", () => connection.status !== "ready", { intervalMs: 5 });
    const startedAt = Date.now();
    await assert.rejects(client.submit("nobody", { kind: "call", payload: 2 }, { timeoutMs: 500 }), (err: unknown) => err instanceof FlotillaError && err.code === "REDIS_UNAVAILABLE");
    // Well under the 2 s a first connection is waited for.
    assert.ok(Date.now() - startedAt < 1500, `refused after ${Date.now() - startedAt} ms`);
  });
});
