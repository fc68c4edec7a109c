/** The Batcher (one flush per key per event-loop turn, or one under way per key) and the request Semaphore. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Batcher } from "../../src/shared/batcher.js";
import { Semaphore } from "../../src/shared/semaphore.js";

describe("Batcher", () => {
  it("flushes what was added in one turn together, per key, and resolves each item with its own result", async () => {
    const flushes: Array<[string, number[]]> = [];
    const batcher = new Batcher<string, number, number>(async (key, items) => {
      flushes.push([key, items]);
      return items.map((n) => n * 10);
    });
    const results = await Promise.all([batcher.add("a", 1), batcher.add("b", 2), batcher.add("a", 3)]);
    assert.deepEqual(results, [10, 20, 30]);
    assert.deepEqual(flushes, [["a", [1, 3]], ["b", [2]]]);
    assert.equal(await batcher.add("a", 4), 40, "a later turn is a new batch");
    assert.equal(flushes.length, 3);
  });

  it("flushes at once when a batch is full, and rejects every item of a failed flush", async () => {
    const sizes: number[] = [];
    const batcher = new Batcher<string, number, number>(async (_key, items) => {
      sizes.push(items.length);
      if (items.includes(-1)) throw new Error("redis down");
      return items;
    }, 2);
    await Promise.all([batcher.add("k", 1), batcher.add("k", 2), batcher.add("k", 3)]);
    assert.deepEqual(sizes, [2, 1]);
    const failed = await Promise.allSettled([batcher.add("k", -1), batcher.add("k", 5)]);
    assert.deepEqual(failed.map((r) => r.status), ["rejected", "rejected"]);
  });
});

describe("Batcher with one flush in flight per key", () => {
  it("holds a key's items while its flush is under way and sends them together when it ends, never two at once; other keys go on", async () => {
    const flushes: Array<[string, number[]]> = [];
    const gates: Array<{ open(fail?: boolean): void }> = [];
    let running = 0;
    let peak = 0;
    const batcher = new Batcher<string, number, number>(
      (key, items) => {
        flushes.push([key, items]);
        running++;
        peak = Math.max(peak, running);
        return new Promise<number[]>((resolve, reject) =>
          gates.push({
            open: (fail) => {
              running--;
              if (fail) reject(new Error("redis down"));
              else resolve(items.map((n) => n * 10));
            },
          }),
        );
      },
      512,
      true,
    );
    const turn = (): Promise<void> => new Promise((r) => setImmediate(r));
    const first = batcher.add("a", 1);
    await turn();
    assert.deepEqual(flushes, [["a", [1]]]);
    // Three turns while the first flush is under way: nothing more goes for "a", "b" goes at once.
    const waiting = [batcher.add("a", 2)];
    await turn();
    waiting.push(batcher.add("a", 3));
    const other = batcher.add("b", 7);
    await turn();
    waiting.push(batcher.add("a", 4));
    await turn();
    assert.deepEqual(flushes, [["a", [1]], ["b", [7]]]);
    (gates[1] as { open(): void }).open();
    assert.equal(await other, 70);
    (gates[0] as { open(fail?: boolean): void }).open(true);
    await assert.rejects(first, /redis down/);
    await turn();
    assert.deepEqual(flushes[2], ["a", [2, 3, 4]], "what gathered went together as soon as the failed flush ended");
    (gates[2] as { open(): void }).open();
    assert.deepEqual(await Promise.all(waiting), [20, 30, 40]);
    assert.equal(peak, 2, "at most one flush per key (one of a, one of b)");
    const later = batcher.add("a", 5);
    await turn();
    assert.deepEqual(flushes[3], ["a", [5]], "with nothing under way, the next turn flushes as before");
    (gates[3] as { open(): void }).open();
    assert.equal(await later, 50);
  });
});

describe("Semaphore", () => {
  it("lets at most `limit` holders in, in arrival order, and follows a new limit", async () => {
    const sem = new Semaphore(2);
    const order: number[] = [];
    await sem.acquire();
    await sem.acquire();
    const third = sem.acquire().then(() => order.push(3));
    const fourth = sem.acquire().then(() => order.push(4));
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(order, [], "nobody past the limit");
    sem.release();
    await third;
    assert.deepEqual(order, [3]);
    sem.setLimit(3);
    await fourth;
    assert.deepEqual(order, [3, 4]);
  });

  it("honours a lowered limit while requests wait: no more than the new limit run", async () => {
    const sem = new Semaphore(4);
    let running = 0;
    let peakAfterLowering = 0;
    let lowered = false;
    const releases: Array<() => void> = [];
    const request = async (): Promise<void> => {
      await sem.acquire();
      running++;
      if (lowered) peakAfterLowering = Math.max(peakAfterLowering, running);
      await new Promise<void>((resolve) => releases.push(resolve));
      running--;
      sem.release();
    };
    const all = Array.from({ length: 12 }, () => request());
    await new Promise((r) => setImmediate(r));
    assert.equal(running, 4, "the first four run, eight wait");
    sem.setLimit(2);
    lowered = true;
    const finishOne = async (): Promise<void> => {
      releases.shift()?.();
      await new Promise((r) => setImmediate(r));
    };
    await finishOne();
    assert.equal(running, 3, "a release over the new limit admits nobody");
    await finishOne();
    assert.equal(running, 2, "still over: nobody admitted until under the limit");
    await finishOne();
    assert.equal(running, 2, "under the limit: one waiter in for the one that left");
    while (releases.length > 0) await finishOne();
    await Promise.all(all);
    assert.equal(running, 0);
    assert.equal(peakAfterLowering, 2, "never more than the new limit once it was lowered (beyond those already running)");
  });
});
