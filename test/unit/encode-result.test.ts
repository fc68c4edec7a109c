/**
 * What a handler's return value becomes on the wire (encodeResult): the
 * status, the content type and the body an HTTP client sees, for each kind
 * of value and for an explicit response(), whose headers win.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { encodeResult, response } from "../../src/shared/protocol.js";

describe("encodeResult", () => {
  it("answers a plain value as JSON, a string as text, bytes as base64, and nothing as 204", () => {
    assert.deepEqual(encodeResult({ ok: true }), { status: 200, headers: { "content-type": "application/json; charset=utf-8" }, body: '{"ok":true}' });
    assert.deepEqual(encodeResult(0), { status: 200, headers: { "content-type": "application/json; charset=utf-8" }, body: "0" });
    assert.deepEqual(encodeResult("hi"), { status: 200, headers: { "content-type": "text/plain; charset=utf-8" }, body: "hi" });
    const bytes = new Uint8Array([9, 1, 2, 3, 9]).subarray(1, 4);
    assert.deepEqual(encodeResult(bytes), { status: 200, headers: { "content-type": "application/octet-stream" }, body: Buffer.from([1, 2, 3]).toString("base64"), base64: true });
    assert.deepEqual(encodeResult(undefined), { status: 204, headers: {}, body: "" });
    assert.deepEqual(encodeResult(null), { status: 204, headers: {}, body: "" });
  });

  it("keeps an explicit response's status, lower-cases its headers, and lets them set the content type", () => {
    assert.deepEqual(encodeResult(response({ status: 201, headers: { Location: "/items/1" }, body: { id: 1 } })), {
      status: 201,
      headers: { "content-type": "application/json; charset=utf-8", location: "/items/1" },
      body: '{"id":1}',
    });
    assert.deepEqual(encodeResult(response({ headers: { "Content-Type": "text/csv" }, body: "a,b" })), { status: 200, headers: { "content-type": "text/csv" }, body: "a,b" });
    // An explicit empty body keeps the status it was given, 200 included.
    assert.deepEqual(encodeResult(response({ body: null })), { status: 200, headers: {}, body: "" });
    assert.deepEqual(encodeResult(response({ status: 404, headers: { "X-Why": "gone" } })), { status: 404, headers: { "x-why": "gone" }, body: "" });
  });

  it("gives every answer headers of its own, which the router may add to", () => {
    const a = encodeResult({ ok: true });
    const b = encodeResult({ ok: true });
    assert.notEqual(a.headers, b.headers);
    const headers = { "x-shared": "1" };
    const c = encodeResult(response({ headers, body: "x" }));
    assert.notEqual(c.headers, headers);
  });
});
