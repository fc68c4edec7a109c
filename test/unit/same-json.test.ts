import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { sameJson } from "../../src/shared/same-json.js";

describe("sameJson", () => {
  it("says what sorted-key JSON would say: key order and undefined properties do not count", () => {
    assert.equal(sameJson({ a: 1, b: [1, { c: "x" }] }, { b: [1, { c: "x" }], a: 1 }), true);
    assert.equal(sameJson({ a: 1, b: undefined }, { a: 1 }), true);
    assert.equal(sameJson({ a: 1 }, { a: 1, b: undefined }), true);
    assert.equal(sameJson(null, null), true);
    assert.equal(sameJson(undefined, undefined), true);
  });

  it("finds every difference: values, extra keys on either side, array lengths and order, types", () => {
    assert.equal(sameJson({ a: 1 }, { a: 2 }), false);
    assert.equal(sameJson({ a: 1 }, { a: 1, b: 0 }), false);
    assert.equal(sameJson({ a: 1, b: 0 }, { a: 1 }), false);
    assert.equal(sameJson({ a: { b: 1 } }, { a: { b: 1, c: null } }), false);
    assert.equal(sameJson([1, 2], [2, 1]), false);
    assert.equal(sameJson([1], [1, 1]), false);
    assert.equal(sameJson([], {}), false);
    assert.equal(sameJson({}, []), false);
    assert.equal(sameJson("1", 1), false);
    assert.equal(sameJson(null, {}), false);
    assert.equal(sameJson({ a: 1 }, undefined), false);
    assert.equal(sameJson(undefined, { a: 1 }), false);
  });

  it("leaves out one top-level key when asked, only at the top", () => {
    assert.equal(sameJson({ a: 1, updatedAt: 1 }, { a: 1, updatedAt: 2 }, "updatedAt"), true);
    assert.equal(sameJson({ a: 1, updatedAt: 1 }, { a: 1 }, "updatedAt"), true);
    assert.equal(sameJson({ a: { updatedAt: 1 } }, { a: { updatedAt: 2 } }, "updatedAt"), false);
    assert.equal(sameJson({ a: 1, updatedAt: 1 }, { a: 2, updatedAt: 1 }, "updatedAt"), false);
  });
});
