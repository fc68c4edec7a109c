/** The rate's window and sum, as a reader computes them from the per-second hashes. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { RATE_WINDOW_S, rateWindow, ratesFrom } from "../../src/client/request-counter.js";

describe("request rates", () => {
  it("averages over RATE_WINDOW_S consecutive whole seconds that ended a few seconds ago", () => {
    for (const nowS of [1_764_745_200, 1_764_745_200.999, 17]) {
      const window = rateWindow(nowS);
      assert.equal(window.length, RATE_WINDOW_S);
      window.forEach((s, i) => i > 0 && assert.equal(s, (window[i - 1] as number) + 1));
      const last = window[window.length - 1] as number;
      // Every requester flushes within a second of a count, so the second just ended may still be filling.
      assert.ok(last <= Math.floor(nowS) - 2, `last second ${last} at ${nowS}`);
      assert.ok(last >= Math.floor(nowS) - 4, `the rate lags at most a few seconds (last ${last} at ${nowS})`);
    }
  });

  it("sums each deployment over the window and divides by its length, skipping missing seconds and garbage", () => {
    const rates = ratesFrom([{ web: "10", api: "5" }, null, undefined, { web: "15", api: "nope", other: "-3" }, {}]);
    assert.equal(rates.get("web"), 25 / RATE_WINDOW_S);
    assert.equal(rates.get("api"), 5 / RATE_WINDOW_S);
    assert.equal(rates.has("other"), false);
    assert.equal(ratesFrom([]).size, 0);
  });
});
