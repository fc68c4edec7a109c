/**
 * batch(): requests gathered by size and by time, each caller its own output,
 * errors, wrong output counts, callers that give up, live option changes and
 * `this`. Real timers, short ones; waits on promises, never on fixed sleeps.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { batch } from "../../src/actors/batch.js";

/** A promise with its resolver outside, to hold a batch function until the test lets it go. */
function gate<T = void>(): { promise: Promise<T>; open(value: T): void } {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => (open = resolve));
  return { promise, open };
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

describe("batch(): gathering requests", () => {
  it("sends a full batch at once, without waiting out the timeout, and gives each caller its own output", async () => {
    const batches: number[][] = [];
    const double = batch(
      async (inputs: number[]) => {
        batches.push(inputs);
        return inputs.map((n) => n * 2);
      },
      { maxBatchSize: 4, batchWaitTimeoutS: 60 },
    );
    const t0 = performance.now();
    const outputs = await Promise.all([1, 2, 3, 4, 5, 6, 7, 8].map((n) => double(n)));
    assert.deepEqual(outputs, [2, 4, 6, 8, 10, 12, 14, 16]);
    assert.deepEqual(batches, [
      [1, 2, 3, 4],
      [5, 6, 7, 8],
    ]);
    assert.ok(performance.now() - t0 < 5_000, "two full batches ran without waiting for the 60 s timeout");
  });

  it("sends a partial batch once the first request has waited batchWaitTimeoutS, and later requests form the next batch", async () => {
    const batches: Array<{ inputs: string[]; at: number }> = [];
    const t0 = performance.now();
    const upper = batch(
      (inputs: string[]) => {
        batches.push({ inputs, at: performance.now() - t0 });
        return inputs.map((s) => s.toUpperCase());
      },
      { maxBatchSize: 100, batchWaitTimeoutS: 0.05 },
    );
    const first = [upper("a"), upper("b"), upper("c")];
    assert.deepEqual(await Promise.all(first), ["A", "B", "C"]);
    assert.equal(batches.length, 1);
    assert.ok((batches[0]?.at ?? 0) >= 45, `the batch waited for company (${batches[0]?.at} ms)`);
    assert.equal(await upper("d"), "D");
    assert.deepEqual(
      batches.map((b) => b.inputs),
      [["a", "b", "c"], ["d"]],
    );
  });

  it("with batchWaitTimeoutS 0, batches what arrives in the same turn", async () => {
    const sizes: number[] = [];
    const id = batch(
      (inputs: number[]) => {
        sizes.push(inputs.length);
        return inputs;
      },
      { batchWaitTimeoutS: 0 },
    );
    assert.deepEqual(await Promise.all([id(1), id(2), id(3)]), [1, 2, 3]);
    assert.deepEqual(sizes, [3]);
  });

  it("defaults to Ray Serve's: batches of at most 10, a 10 ms wait, one batch at a time", async () => {
    const sizes: number[] = [];
    const id = batch((inputs: number[]) => {
      sizes.push(inputs.length);
      return inputs;
    });
    assert.deepEqual(id.batchOptions, { maxBatchSize: 10, batchWaitTimeoutS: 0.01, maxConcurrentBatches: 1 });
    await Promise.all(Array.from({ length: 25 }, (_, i) => id(i)));
    assert.deepEqual(sizes, [10, 10, 5]);
  });

  it("runs one batch at a time by default: requests arriving meanwhile form the next batch, which starts when it ends", async () => {
    const hold = gate();
    let running = 0;
    let most = 0;
    const sizes: number[] = [];
    const slow = batch(
      async (inputs: number[]) => {
        running++;
        most = Math.max(most, running);
        sizes.push(inputs.length);
        if (sizes.length === 1) await hold.promise;
        running--;
        return inputs;
      },
      { maxBatchSize: 2, batchWaitTimeoutS: 0 },
    );
    const all = [slow(1), slow(2)];
    await turn();
    all.push(slow(3), slow(4), slow(5), slow(6), slow(7));
    await turn();
    assert.deepEqual(sizes, [2], "the next batches wait for the first");
    hold.open();
    assert.deepEqual(await Promise.all(all), [1, 2, 3, 4, 5, 6, 7]);
    assert.deepEqual(sizes, [2, 2, 2, 1]);
    assert.equal(most, 1);
  });

  it("runs up to maxConcurrentBatches batches at once", async () => {
    const hold = gate();
    let running = 0;
    let most = 0;
    const f = batch(
      async (inputs: number[]) => {
        running++;
        most = Math.max(most, running);
        await hold.promise;
        running--;
        return inputs;
      },
      { maxBatchSize: 2, batchWaitTimeoutS: 0, maxConcurrentBatches: 2 },
    );
    const all = [1, 2, 3, 4, 5, 6].map((n) => f(n));
    await turn();
    assert.equal(running, 2);
    hold.open();
    assert.deepEqual(await Promise.all(all), [1, 2, 3, 4, 5, 6]);
    assert.equal(most, 2);
  });
});

describe("batch(): failures", () => {
  it("rejects every request of a batch whose function throws or rejects, with that error, and keeps serving", async () => {
    for (const fails of [
      (): never => {
        throw new Error("model exploded");
      },
      async (): Promise<never> => {
        throw new Error("model exploded");
      },
    ]) {
      let calls = 0;
      const f = batch(
        (inputs: number[]) => {
          calls++;
          return calls === 1 ? fails() : inputs;
        },
        { batchWaitTimeoutS: 0 },
      );
      const results = await Promise.allSettled([f(1), f(2), f(3)]);
      assert.deepEqual(
        results.map((r) => (r.status === "rejected" ? (r.reason as Error).message : r.value)),
        ["model exploded", "model exploded", "model exploded"],
      );
      assert.deepEqual(await Promise.all([f(4), f(5)]), [4, 5], "the next batch is served");
    }
  });

  it("rejects every request of a batch whose function returns the wrong number of outputs, or no array, saying so", async () => {
    const short = batch((inputs: number[]) => inputs.slice(1), { batchWaitTimeoutS: 0 });
    const results = await Promise.allSettled([short(1), short(2), short(3)]);
    for (const r of results) {
      assert.equal(r.status, "rejected");
      assert.match((r.reason as Error).message, /expected 3 outputs \(one per input\), got 2/);
    }
    const notArray = batch((() => ({ answer: 42 })) as unknown as (inputs: number[]) => number[], { batchWaitTimeoutS: 0 });
    const [one, two] = await Promise.allSettled([notArray(1), notArray(2)]);
    assert.equal(one?.status, "rejected");
    assert.match(((one as PromiseRejectedResult).reason as Error).message, /must return an array .*expected 2 outputs, got an object/);
    assert.equal(two?.status, "rejected");
  });

  it("removes a request whose signal aborts before its batch starts, rejecting it with the abort reason", async () => {
    const batches: string[][] = [];
    const f = batch(
      (inputs: string[]) => {
        batches.push(inputs);
        return inputs;
      },
      { maxBatchSize: 10, batchWaitTimeoutS: 0.05 },
    );
    const gone = new AbortController();
    const already = new AbortController();
    already.abort(new Error("gave up before asking"));
    const calls = [f("a"), f("b", { signal: gone.signal }), f("c"), f("d", { signal: already.signal })];
    gone.abort(new Error("client disconnected"));
    const results = await Promise.allSettled(calls);
    assert.deepEqual(
      results.map((r) => (r.status === "fulfilled" ? r.value : (r.reason as Error).message)),
      ["a", "client disconnected", "c", "gave up before asking"],
    );
    assert.deepEqual(batches, [["a", "c"]], "the batch function never saw the requests that gave up");
  });

  it("answers a request whose signal aborts after its batch started", async () => {
    const hold = gate();
    const f = batch(
      async (inputs: string[]) => {
        await hold.promise;
        return inputs;
      },
      { batchWaitTimeoutS: 0 },
    );
    const late = new AbortController();
    const answer = f("x", { signal: late.signal });
    await turn();
    late.abort(new Error("too late"));
    hold.open();
    assert.equal(await answer, "x");
  });

  it("sends the rest of a batch at once when its only waiting request before them leaves", async () => {
    const sizes: number[] = [];
    const f = batch(
      (inputs: number[]) => {
        sizes.push(inputs.length);
        return inputs;
      },
      { maxBatchSize: 3, batchWaitTimeoutS: 60 },
    );
    const leaving = new AbortController();
    const a = f(1, { signal: leaving.signal });
    const b = f(2);
    leaving.abort(new Error("left"));
    await assert.rejects(a, /left/);
    const c = f(3);
    const d = f(4);
    assert.deepEqual(await Promise.all([b, c, d]), [2, 3, 4]);
    assert.deepEqual(sizes, [3]);
  });
});

describe("batch(): options", () => {
  it("rejects bad options with an error naming the option and the value", () => {
    const id = (xs: number[]): number[] => xs;
    assert.throws(() => batch(id, { maxBatchSize: 0 }), /batch\(\): maxBatchSize: .*>=1.*\(got 0\)/);
    assert.throws(() => batch(id, { maxBatchSize: 2.5 }), /maxBatchSize: .*int.*\(got 2\.5\)/i);
    assert.throws(() => batch(id, { batchWaitTimeoutS: -1 }), /batchWaitTimeoutS: .*\(got -1\)/);
    assert.throws(() => batch(id, { batchWaitTimeoutS: Number.NaN }), /batchWaitTimeoutS/);
    assert.throws(() => batch(id, { batchWaitTimeoutS: "1" as unknown as number }), /batchWaitTimeoutS: .*\(got "1"\)/);
    assert.throws(() => batch(id, { maxConcurrentBatches: 0 }), /maxConcurrentBatches/);
    assert.throws(() => batch(id, { maxBatchsize: 4 } as never), /unknown option 'maxBatchsize' \(known: maxBatchSize, batchWaitTimeoutS, maxConcurrentBatches\)/);
    assert.throws(() => batch(id, 8 as never), /options must be an object/);
    assert.throws(() => batch("model" as never), /fn must be a function/);
    const ok = batch(id, { maxBatchSize: 4 });
    assert.throws(() => ok.setBatchOptions({ maxBatchSize: -2 }), /maxBatchSize: .*\(got -2\)/);
    assert.equal(ok.batchOptions.maxBatchSize, 4, "a refused change keeps the options in force");
  });

  it("rejects a call whose context's signal is not an AbortSignal", async () => {
    const f = batch((xs: number[]) => xs);
    await assert.rejects(f(1, { signal: "soon" as never }), /signal must be an AbortSignal/);
  });

  it("applies setBatchOptions to requests already waiting: a shorter timeout or a smaller size sends them at once", async () => {
    const sizes: number[] = [];
    const f = batch(
      (inputs: number[]) => {
        sizes.push(inputs.length);
        return inputs;
      },
      { maxBatchSize: 100, batchWaitTimeoutS: 60 },
    );
    const waiting = [f(1), f(2), f(3)];
    await turn();
    assert.deepEqual(sizes, []);
    f.setBatchOptions({ maxBatchSize: 2 });
    assert.deepEqual(sizes, [2], "a full batch of the new size left at once");
    f.setBatchOptions({ batchWaitTimeoutS: 0 });
    assert.deepEqual(await Promise.all(waiting), [1, 2, 3]);
    assert.deepEqual(sizes, [2, 1]);
    assert.deepEqual(f.batchOptions, { maxBatchSize: 2, batchWaitTimeoutS: 0, maxConcurrentBatches: 1 }, "options left out kept their value");
    const later = await Promise.all([f(4), f(5), f(6)]);
    assert.deepEqual(later, [4, 5, 6]);
    assert.deepEqual(sizes, [2, 1, 2, 1]);
  });
});

describe("batch(): this", () => {
  class Tagger {
    constructor(readonly tag: string) {}
    /** The arrow form: a class field runs in the constructor, so `this` is the instance. */
    arrow = batch((inputs: string[]) => inputs.map((s) => `${this.tag}:${s}`), { batchWaitTimeoutS: 0 });
    /** The function form: `this` is whatever the batched function is called on. */
    method = batch(
      async function (this: Tagger, inputs: string[]) {
        return inputs.map((s) => `${this.tag}/${s}`);
      },
      { batchWaitTimeoutS: 0 },
    );
  }

  it("binds this to the instance, in the arrow and the function forms, the way a replica calls a class handler", async () => {
    const t = new Tagger("t");
    const call = t.method;
    assert.deepEqual(await Promise.all([t.arrow("a"), t.arrow("b")]), ["t:a", "t:b"]);
    assert.deepEqual(await Promise.all([t.method("a"), call.call(t, "b")]), ["t/a", "t/b"]);
  });

  it("never mixes calls on different objects in one batch when one batched function is shared", async () => {
    const seen: Array<{ tag: string; inputs: number[] }> = [];
    const shared = batch(
      function (this: { tag: string }, inputs: number[]) {
        seen.push({ tag: this.tag, inputs });
        return inputs.map((n) => `${this.tag}${n}`);
      },
      { batchWaitTimeoutS: 0 },
    );
    const a = { tag: "a", call: shared };
    const b = { tag: "b", call: shared };
    assert.deepEqual(await Promise.all([a.call(1), b.call(2), a.call(3)]), ["a1", "b2", "a3"]);
    assert.deepEqual(
      seen.sort((x, y) => x.tag.localeCompare(y.tag)),
      [
        { tag: "a", inputs: [1, 3] },
        { tag: "b", inputs: [2] },
      ],
    );
  });
});
