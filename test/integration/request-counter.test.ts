/**
 * Requests per second on the real Redis: a requester's counts reach Redis in
 * per-second hashes and running totals, the rate is the window's sum over its
 * length, requesters add up, and counts made while Redis is away are written
 * once it is back.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { RATE_WINDOW_S, RequestCounter, rateWindow, readRequestRates } from "../../src/client/request-counter.js";
import { Keys } from "../../src/shared/keys.js";
import { createRedis } from "../../src/shared/redis.js";
import { freePort, PrivateRedis } from "../helpers/private-redis.js";
import { cleanupNamespace, testNamespace, testRedis } from "../helpers/redis.js";
import { waitFor } from "../helpers/wait.js";

describe("request counter", () => {
  const namespace = testNamespace("reqcount");
  const keys = new Keys(namespace);
  const redis = testRedis();

  after(async () => {
    redis.disconnect();
    await cleanupNamespace(namespace);
  });

  it("writes each second's counts and the totals; the rate is the window's sum over its length; requesters add up", async () => {
    const nowS = Number((await redis.time())[0]);
    const window = rateWindow(nowS);
    const [first, second] = [window[0] as number, window[RATE_WINDOW_S - 1] as number];
    const a = new RequestCounter(redis, keys);
    const b = new RequestCounter(redis, keys);
    for (let i = 0; i < 1000; i++) a.add("web", 1, first * 1000 + (i % 1000));
    a.add("web", 24, second * 1000);
    a.add("batchy", 64, second * 1000 + 500);
    b.add("web", 6, second * 1000 + 999);
    // Outside the window: in the totals, not in the rate.
    b.add("web", 50, (first - 1) * 1000);
    await Promise.all([a.flush(), b.flush()]);

    assert.deepEqual(await redis.hgetall(keys.requestsAt(first)), { web: "1000" });
    assert.deepEqual(await redis.hgetall(keys.requestsAt(second)), { web: "30", batchy: "64" });
    const ttl = await redis.ttl(keys.requestsAt(second));
    assert.ok(ttl > 0 && ttl <= 120, `a second's counts expire (ttl ${ttl} s)`);

    const rates = await readRequestRates(redis, keys, nowS);
    assert.equal(rates.perS.get("web"), 1030 / RATE_WINDOW_S);
    assert.equal(rates.perS.get("batchy"), 64 / RATE_WINDOW_S);
    assert.equal(rates.total.get("web"), 1080);
    assert.equal(rates.total.get("batchy"), 64);
    // A flush with nothing new writes nothing.
    await a.flush();
    assert.equal((await readRequestRates(redis, keys, nowS)).total.get("web"), 1080);
    await Promise.all([a.close(), b.close()]);
  });

  it("writes on its own within a second or so of a request", async () => {
    const counter = new RequestCounter(redis, keys);
    try {
      counter.add("timed", 3);
      await waitFor("the counter's own flush to write the count", async () => (await readRequestRates(redis, keys)).total.get("timed") === 3, { timeoutMs: 5000 });
    } finally {
      await counter.close();
    }
  });

  it("keeps counts made while Redis is away and writes them once it is back", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "flotilla-reqcount-"));
    const server = new PrivateRedis(await freePort(), dir);
    await server.start();
    const conn = createRedis(server.url, { mode: "failFast", name: "reqcount-test" });
    const counter = new RequestCounter(conn, keys);
    try {
      await waitFor("the connection to be ready", () => conn.status === "ready", { timeoutMs: 5000 });
      counter.add("away", 2);
      await counter.flush();
      await server.stop();
      await waitFor("the connection to see Redis gone", () => conn.status !== "ready", { timeoutMs: 5000 });
      counter.add("away", 5);
      await counter.flush();
      await server.start();
      await waitFor("the counts made during the outage to be written", async () => {
        if (conn.status !== "ready") return false;
        return (await conn.hget(keys.requestsTotal, "away")) === "7";
      }, { timeoutMs: 15_000, describe: () => ({ status: conn.status }) });
    } finally {
      await counter.close();
      conn.disconnect();
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
