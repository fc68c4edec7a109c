/** The pure parts of async requests: the Prefer header, the wait parameter, progress values, ids. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FlotillaError } from "../../src/errors.js";
import { isAsyncId, MAX_PROGRESS_BYTES, newAsyncId, progressJson } from "../../src/queue/async-requests.js";
import { prefersAsync, waitSeconds } from "../../src/router/async-routes.js";

describe("the Prefer header (RFC 7240)", () => {
  it("finds respond-async among other preferences, in any case, with parameters and quoted values", () => {
    assert.equal(prefersAsync("respond-async"), true);
    assert.equal(prefersAsync("Respond-Async"), true);
    assert.equal(prefersAsync("return=minimal, respond-async"), true);
    assert.equal(prefersAsync("wait=10, respond-async; foo=bar"), true);
    assert.equal(prefersAsync('handling=lenient; note="a, respond-async", respond-async'), true);
    assert.equal(prefersAsync("  respond-async  ,wait=5"), true);
  });

  it("does not mistake other preferences, values or quoted text for it", () => {
    assert.equal(prefersAsync(undefined), false);
    assert.equal(prefersAsync(""), false);
    assert.equal(prefersAsync("return=minimal"), false);
    assert.equal(prefersAsync("wait=respond-async"), false);
    assert.equal(prefersAsync('note="respond-async"'), false);
    assert.equal(prefersAsync('note="x, respond-async"'), false);
    assert.equal(prefersAsync("respond-asynchronously"), false);
    assert.equal(prefersAsync("return=minimal; respond-async"), false, "a parameter of another preference");
  });
});

describe("the wait parameter", () => {
  it("is seconds, 0 when absent, capped at 60", () => {
    assert.equal(waitSeconds(null), 0);
    assert.equal(waitSeconds(""), 0);
    assert.equal(waitSeconds("2.5"), 2.5);
    assert.equal(waitSeconds("3600"), 60);
  });

  it("refuses what is not a number of seconds, naming the field", () => {
    for (const bad of ["-1", "abc", "Infinity", "1e999"]) {
      assert.throws(() => waitSeconds(bad), (err: unknown) => err instanceof FlotillaError && err.code === "INVALID_REQUEST" && err.message.startsWith("wait:"), bad);
    }
  });
});

describe("progress values", () => {
  it("are numbers or small JSON values", () => {
    assert.equal(progressJson(0.5), "0.5");
    assert.equal(progressJson({ done: 3, of: 10 }), '{"done":3,"of":10}');
  });

  it("refuses values that are not JSON or too large, saying why", () => {
    assert.throws(() => progressJson(undefined), /not JSON/);
    assert.throws(() => progressJson(() => 1), /not JSON/);
    assert.throws(() => progressJson(10n), /not JSON/);
    assert.throws(() => progressJson("x".repeat(MAX_PROGRESS_BYTES)), new RegExp(`more than ${MAX_PROGRESS_BYTES}`));
  });
});

describe("async request ids", () => {
  it("are random UUIDs, distinct, and only that form is accepted", () => {
    const ids = new Set(Array.from({ length: 1000 }, () => newAsyncId()));
    assert.equal(ids.size, 1000);
    for (const id of ids) assert.ok(isAsyncId(id), id);
    for (const bad of ["", "1", "../x", "00000000-0000-0000-0000-000000000000", `${newAsyncId()}x`, newAsyncId().toUpperCase()]) assert.equal(isAsyncId(bad), false, bad);
  });
});
