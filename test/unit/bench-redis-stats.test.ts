/** The bench's Redis cost of a cell, from two INFO snapshots. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { mergeLoads, type LoadSlice } from "../../bench/load.js";
import { addCpuDeltas, cpuCostOf, type CpuDelta } from "../../bench/process-cpu.js";
import { addDeltas, costBetween, costOf, deltaBetween, parseInfo } from "../../bench/redis-stats.js";

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

describe("a cell measured in slices", () => {
  const slice = (rps: number, durationS: number, latencies: number[], errors = 0): LoadSlice => ({
    latencies: [...latencies].sort((a, b) => a - b),
    result: {
      connections: 1,
      durationS,
      rps,
      completed: latencies.length + errors,
      p50Ms: Number.NaN,
      p99Ms: Number.NaN,
      errors,
      non2xx: errors,
      timeouts: 0,
      autocannon: { p50Ms: latencies.length, p99Ms: 10 * latencies.length, averageMs: 1 },
    },
  });

  it("pools the slices' responses for its percentiles, weights req/s by duration and sums errors", () => {
    // One slow slice of three: its responses count as a third of all responses, not as one of three slice medians.
    const load = mergeLoads([slice(100, 2, [1, 1, 1, 1]), slice(50, 2, [9, 9, 9, 9], 1), slice(200, 4, [2, 2, 2, 2])]);
    assert.equal(load.p50Ms, 2);
    assert.equal(load.p99Ms, 9);
    assert.equal(load.rps, (100 * 2 + 50 * 2 + 200 * 4) / 8);
    assert.equal(load.durationS, 8);
    assert.equal(load.completed, 13);
    assert.equal(load.errors, 1);
    assert.deepEqual(
      load.slices?.map((s) => s.rps),
      [100, 50, 200],
    );
    assert.deepEqual(load.autocannon, { p50Ms: 4, p99Ms: 40, averageMs: 1 });
  });

  it("adds the slices' Redis and process costs before dividing by all their requests", () => {
    const a = deltaBetween(
      parseInfo(info({ evalsha: 0, get: 0, info: 0, user: 1, sys: 0, reads: 0, writes: 0 }), 0),
      parseInfo(info({ evalsha: 100, get: 50, info: 1, user: 1.01, sys: 0, reads: 101, writes: 101 }), 1000),
    );
    const b = deltaBetween(
      parseInfo(info({ evalsha: 0, get: 0, info: 0, user: 2, sys: 0, reads: 0, writes: 0 }), 0),
      parseInfo(info({ evalsha: 300, get: 150, info: 1, user: 2.03, sys: 0, reads: 301, writes: 301 }), 3000),
    );
    const cost = costOf(addDeltas([a, b]), 400);
    assert.equal(cost.calls, 600);
    assert.equal(cost.scriptCalls, 400);
    assert.equal(cost.elapsedS, 4);
    assert.deepEqual(cost.perRequest, { calls: 1.5, usec: 10.5, scriptCalls: 1, cpuUs: 100, reads: 1, writes: 1 });

    const cpu = (entries: Array<[string, number, number | undefined]>): CpuDelta => new Map(entries.map(([name, us, writes]) => [name, { us, writes }]));
    // The replica was gone in one slice: left out, as one long cell leaves out a process that changed.
    const processes = cpuCostOf(
      addCpuDeltas([
        cpu([["router", 10_000, 100], ["replica", 5_000, 50]]),
        cpu([["router", 30_000, undefined]]),
      ]),
      400,
    );
    assert.deepEqual(processes, { router: { cpuUs: 100 } });
  });
});

