/**
 * nextBatchStep() in a simulated world: seeded random arrivals, batch run
 * times, callers that give up and option changes, on a virtual clock. What a
 * user would see is asserted: every request answered once, in arrival order,
 * batches never over the size, never more running than allowed, and a
 * request never left waiting past its timeout while a batch could start.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { BatchOptions } from "../../src/actors/batch-options.js";
import { nextBatchStep } from "../../src/actors/batch-plan.js";
import { mulberry32 } from "../helpers/prng.js";

interface Request {
  id: number;
  arrivedAt: number;
  startedAt?: number;
  gaveUp?: boolean;
}

function simulate(seed: number): { batches: number; requests: number; meanSize: number } {
  const rand = mulberry32(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
  const randomOptions = (): BatchOptions => ({
    maxBatchSize: 1 + Math.floor(rand() * 16),
    batchWaitTimeoutS: pick([0, 0.001, 0.005, 0.01, 0.05]),
    maxConcurrentBatches: pick([1, 1, 2, 3]),
  });
  let options = randomOptions();
  let now = 0;
  let nextArrival = 0;
  let wakeAt: number | undefined;
  let arrived = 0;
  const total = 400;
  const meanGapMs = pick([0.05, 0.5, 2, 10]);
  const waiting: Request[] = [];
  const running: Array<{ endsAt: number; requests: Request[] }> = [];
  const done: Request[] = [];
  const startOrder: number[] = [];
  let batches = 0;

  const act = (): void => {
    for (;;) {
      const step = nextBatchStep({ waiting: waiting.length, oldestArrivedAt: waiting[0]?.arrivedAt, running: running.length }, options, now);
      wakeAt = undefined;
      if (step.kind === "start") {
        assert.ok(step.size >= 1 && step.size <= options.maxBatchSize, `seed ${seed}: batch of ${step.size} over ${options.maxBatchSize}`);
        assert.ok(step.size <= waiting.length);
        const taken = waiting.splice(0, step.size);
        for (const r of taken) {
          r.startedAt = now;
          startOrder.push(r.id);
        }
        running.push({ endsAt: now + 0.5 + rand() * 20, requests: taken });
        assert.ok(running.length <= options.maxConcurrentBatches, `seed ${seed}: ${running.length} batches running`);
        batches++;
        continue;
      }
      if (step.kind === "wait") {
        assert.ok(step.at > now, `seed ${seed}: a wake-up in the past would spin`);
        wakeAt = step.at;
      }
      break;
    }
    // Nothing startable is left behind: a full batch or a due head waits only for a running batch to end.
    const head = waiting[0];
    if (head && running.length < options.maxConcurrentBatches) {
      assert.ok(waiting.length < options.maxBatchSize, `seed ${seed}: a full batch left waiting with free capacity`);
      assert.ok(now < head.arrivedAt + options.batchWaitTimeoutS * 1000, `seed ${seed}: a due request left waiting with free capacity`);
      assert.equal(wakeAt, head.arrivedAt + options.batchWaitTimeoutS * 1000, `seed ${seed}: the wake-up is when the head is due`);
    }
  };

  while (arrived < total || waiting.length > 0 || running.length > 0) {
    const candidates = [arrived < total ? nextArrival : Infinity, wakeAt ?? Infinity, ...running.map((r) => r.endsAt)];
    const next = Math.min(...candidates);
    assert.ok(Number.isFinite(next), `seed ${seed}: stuck with ${waiting.length} waiting and nothing scheduled`);
    now = next;
    for (let i = running.length - 1; i >= 0; i--) {
      const batch = running[i];
      if (batch && batch.endsAt <= now) {
        running.splice(i, 1);
        done.push(...batch.requests);
      }
    }
    if (arrived < total && nextArrival <= now) {
      waiting.push({ id: arrived++, arrivedAt: now });
      nextArrival = now - Math.log(1 - rand()) * meanGapMs;
    }
    if (waiting.length > 0 && rand() < 0.03) {
      const [gone] = waiting.splice(Math.floor(rand() * waiting.length), 1);
      if (gone) {
        gone.gaveUp = true;
        done.push(gone);
      }
    }
    if (rand() < 0.01) options = randomOptions();
    act();
  }

  assert.equal(done.length, total, `seed ${seed}: every request answered or withdrawn`);
  assert.equal(new Set(done.map((r) => r.id)).size, total, `seed ${seed}: none twice`);
  assert.deepEqual(
    startOrder,
    [...startOrder].sort((a, b) => a - b),
    `seed ${seed}: batches take requests in arrival order`,
  );
  const served = done.filter((r) => !r.gaveUp);
  return { batches, requests: served.length, meanSize: served.length / Math.max(1, batches) };
}

describe("nextBatchStep in a simulated world", () => {
  it("answers every request once, in order, within the size and concurrency limits, over 300 seeded runs", () => {
    let batched = 0;
    for (let seed = 1; seed <= 300; seed++) {
      const { meanSize } = simulate(seed);
      if (meanSize > 1.5) batched++;
    }
    assert.ok(batched > 50, `batching happened in many runs (${batched} of 300 averaged above 1.5 per batch)`);
  });

  it("starts a full batch at once, a partial one when its oldest request is due, and nothing while the limit of running batches is reached", () => {
    const options = { maxBatchSize: 4, batchWaitTimeoutS: 0.01, maxConcurrentBatches: 1 };
    assert.deepEqual(nextBatchStep({ waiting: 0, oldestArrivedAt: undefined, running: 0 }, options, 5), { kind: "idle" });
    assert.deepEqual(nextBatchStep({ waiting: 9, oldestArrivedAt: 5, running: 0 }, options, 5), { kind: "start", size: 4 });
    assert.deepEqual(nextBatchStep({ waiting: 2, oldestArrivedAt: 5, running: 0 }, options, 7), { kind: "wait", at: 15 });
    assert.deepEqual(nextBatchStep({ waiting: 2, oldestArrivedAt: 5, running: 0 }, options, 15), { kind: "start", size: 2 });
    assert.deepEqual(nextBatchStep({ waiting: 9, oldestArrivedAt: 5, running: 1 }, options, 50), { kind: "idle" });
  });
});
