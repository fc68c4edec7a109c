import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseControllerOptions } from "../../src/controller/controller-options.js";

const base = { id: "c1", redisUrl: "redis://127.0.0.1:6379", namespace: "ns" };

describe("controller options", () => {
  it("fills the defaults in one place and freezes the result", () => {
    const o = parseControllerOptions({ ...base, admin: { port: 0, bind: "127.0.0.1" } });
    assert.deepEqual({ ...o, admin: { ...o.admin } }, { ...base, tickMs: 500, leaseTtlMs: 3000, admin: { port: 0, bind: "127.0.0.1", maxBodyBytes: 10 * 1024 * 1024 } });
    assert.ok(Object.isFrozen(o) && Object.isFrozen(o.admin));
    assert.equal("admin" in parseControllerOptions(base), false, "no admin API unless asked");
    assert.match(parseControllerOptions({ ...base, id: undefined }).id, new RegExp(`-${process.pid}$`));
  });

  it("rejects bad values with an error naming the field", () => {
    const cases: Array<[object, RegExp]> = [
      [{ tickMs: 0 }, /controller option tickMs:/],
      [{ leaseTtlMs: 800, tickMs: 500 }, /controller option leaseTtlMs: must be more than twice tickMs/],
      [{ admin: { port: 70000, bind: "127.0.0.1" } }, /controller option admin\.port:/],
      [{ admin: { port: 1, bind: "" } }, /controller option admin\.bind:/],
      [{ redisUrl: "" }, /controller option redisUrl:/],
      [{ tickMS: 5 }, /controller option/],
    ];
    for (const [change, message] of cases) {
      assert.throws(() => parseControllerOptions({ ...base, ...change } as never), (err: Error & { code?: string }) => message.test(err.message) && err.code === "INVALID_SPEC", JSON.stringify(change));
    }
  });
});
