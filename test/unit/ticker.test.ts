import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Ticker } from "../../src/shared/ticker.js";

function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

describe("Ticker", () => {
  it("runs once more after a run during which it was nudged, never two runs at once", async (t) => {
    let active = 0;
    let maxActive = 0;
    let runs = 0;
    const gates = [gate(), gate(), gate()];
    const ticker = new Ticker(async () => {
      active += 1;
      maxActive = Math.max(maxActive, active);
      const g = gates[runs];
      runs += 1;
      await g?.promise;
      active -= 1;
    }, () => 60_000);
    t.after(() => {
      for (const g of gates) g.open();
      return ticker.stop();
    });
    ticker.start(0);
    const deadline = Date.now() + 5000;
    while (runs < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
    assert.equal(runs, 1, "the first run starts within 5 s");
    const second = ticker.runNow();
    ticker.nudge();
    ticker.nudge();
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(runs, 1, "the first run is still under way; nudges wait for it");
    gates[0]?.open();
    gates[1]?.open();
    await second;
    assert.equal(runs, 2, "three requests during one run make one more run");
    assert.equal(maxActive, 1);
    gates[2]?.open();
    await ticker.stop();
  });

  it("runs on its interval, keeps going when a run fails, and stops", async () => {
    let runs = 0;
    const ticker = new Ticker(async () => {
      runs += 1;
      throw new Error("a failing run");
    }, () => 5);
    ticker.start(0);
    const deadline = Date.now() + 5000;
    while (runs < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    assert.ok(runs >= 3, `expected 3 runs on a 5 ms interval within 5 s, saw ${runs}`);
    await ticker.stop();
    const after = runs;
    await new Promise((r) => setTimeout(r, 30));
    assert.equal(runs, after, "no run after stop()");
    await ticker.runNow();
  });
});
