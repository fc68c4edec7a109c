/** The error codes are a public contract: README's table and src/errors.ts must agree. */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { ERROR_CODES, FlotillaError } from "../../src/errors.js";

describe("error codes", () => {
  it("README lists every code with its HTTP status, retry flag and summary, and nothing else", () => {
    const readme = readFileSync(new URL("../../README.md", import.meta.url), "utf8");
    const rows = [...readme.matchAll(/^\| `([A-Z_]+)` \| (\d{3}) \| (yes|no) \| (.+) \|$/gm)].map((m) => ({ code: m[1], status: Number(m[2]), retryable: m[3] === "yes", summary: m[4] }));
    assert.deepEqual(
      rows.map((r) => r.code),
      Object.keys(ERROR_CODES),
      "README's table lists the codes of src/errors.ts in the same order",
    );
    for (const row of rows) {
      const def = ERROR_CODES[row.code as keyof typeof ERROR_CODES];
      assert.equal(row.status, def.status, `${row.code} status`);
      assert.equal(row.retryable, def.retryable, `${row.code} retryable`);
      assert.equal(row.summary, def.summary, `${row.code} summary`);
    }
  });

  it("serialises to the JSON body routers answer with, keeping status and retryable from the code", () => {
    const err = new FlotillaError("BACKPRESSURE", "queue full", { details: { deployment: "x" } });
    assert.equal(err.status, 503);
    assert.equal(err.retryable, true);
    assert.deepEqual(JSON.parse(JSON.stringify(err)), { error: { code: "BACKPRESSURE", message: "queue full", details: { deployment: "x" } } });
  });
});
