/** The bench's Redis cost of a cell, from two INFO snapshots. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { costBetween, parseInfo } from "../../bench/redis-stats.js";

const info = (o: { evalsha: number; get: number; info: number; user: number; sys: number; reads: number; writes: number }): string =>
  [
    "# Stats",
    `total_reads_processed:${o.reads}`,
    `total_writes_processed:${o.writes}`,
    "# CPU",
    `used_cpu_sys:${o.sys}`,
    `used_cpu_user:${o.user}`,
    "# Commandstats",
    `cmdstat_evalsha:calls=${o.evalsha},usec=${o.evalsha * 10},usec_per_call=10.00,rejected_calls=0,failed_calls=0`,
    `cmdstat_get:calls=${o.get},usec=${o.get},usec_per_call=1.00,rejected_calls=0,failed_calls=0`,
    `cmdstat_info:calls=${o.info},usec=${o.info * 50},usec_per_call=50.00,rejected_calls=0,failed_calls=0`,
  ].join("\r\n");

describe("a cell's cost to Redis", () => {
  it("counts commands, scripts, CPU and socket reads and writes per request, leaving out the bench's own INFO", () => {
    const before = parseInfo(info({ evalsha: 100, get: 300, info: 4, user: 1.5, sys: 0.5, reads: 1000, writes: 2000 }), 0);
    const after = parseInfo(info({ evalsha: 3100, get: 6300, info: 5, user: 1.6, sys: 0.6, reads: 2501, writes: 4251 }), 2000);
    const cost = costBetween(before, after, 1000);
    assert.equal(cost.calls, 9000);
    assert.equal(cost.scriptCalls, 3000);
    assert.equal(cost.elapsedS, 2);
    assert.deepEqual(cost.perRequest, { calls: 9, usec: 36, scriptCalls: 3, cpuUs: 200, reads: 1.5, writes: 2.25 });
    assert.deepEqual(
      cost.top.map((c) => c.command),
      ["get", "evalsha"],
    );
  });

  it("reads zero reads and writes from an INFO without a stats section, and never counts below zero", () => {
    const before = parseInfo(info({ evalsha: 0, get: 0, info: 0, user: 1, sys: 1, reads: 0, writes: 0 }).replace(/total_\w+:\d+\r\n/g, ""), 0);
    assert.equal(before.reads, 0);
    assert.equal(before.writes, 0);
    const cost = costBetween(before, before, 10);
    assert.equal(cost.perRequest?.reads, 0);
    assert.equal(cost.perRequest?.writes, 0);
  });
});
