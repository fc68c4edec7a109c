import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { settledWithin } from "../../src/shared/settled-within.js";

describe("settledWithin", () => {
  it("is true for a promise that settles in time, resolved or rejected", async () => {
    assert.equal(await settledWithin(Promise.resolve(1), 1000), true);
    assert.equal(await settledWithin(Promise.reject(new Error("no")), 1000), true);
  });

  it("is false once the time is up for a promise that never settles", async () => {
    assert.equal(await settledWithin(new Promise(() => undefined), 20), false);
  });
});
