/** One call of checkHealth(): passes, throws, rejects or times out; and the replica-side schedule reports each result. */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { HealthChecks, runHealthCheck } from "../../src/actors/health-checks.js";
import type { HealthCheckResult } from "../../src/actors/replica-ipc.js";
import { FlotillaError } from "../../src/errors.js";
import { waitFor } from "../helpers/wait.js";

describe("runHealthCheck", () => {
  it("passes a check that returns or resolves", async () => {
    assert.equal(await runHealthCheck(() => undefined, 1), null);
    assert.equal(await runHealthCheck(async () => "fine", 1), null);
  });

  it("fails a check that throws, rejects or does not settle in time, with why", async () => {
    assert.equal(await runHealthCheck(() => { throw new Error("pool closed"); }, 1), "pool closed");
    assert.equal(await runHealthCheck(() => Promise.reject(new Error("gpu lost")), 1), "gpu lost");
    assert.equal(await runHealthCheck(() => new Promise(() => undefined), 0.05), "checkHealth() did not finish within 0.05 s");
  });
});

describe("HealthChecks", () => {
  it("fails the start on a failed first check, with HEALTH_CHECK_FAILED and the check's message", async () => {
    const results: HealthCheckResult[] = [];
    const checks = new HealthChecks({ healthCheckPeriodS: 0.01, healthCheckTimeoutS: 1 }, (r) => results.push(r));
    await assert.rejects(
      checks.first({ kind: "class", call: () => null, checkHealth: () => { throw new Error("model not ready"); } }),
      (err: unknown) => err instanceof FlotillaError && err.code === "HEALTH_CHECK_FAILED" && err.message === "health check failed: model not ready",
    );
    assert.equal(results.length, 1);
    assert.equal(results[0]?.error, "model not ready");
    checks.stop();
  });

  it("after a passing first check, reports every periodic result until stopped; a handler without checkHealth is never checked", async () => {
    const results: HealthCheckResult[] = [];
    let calls = 0;
    const checks = new HealthChecks({ healthCheckPeriodS: 0.01, healthCheckTimeoutS: 1 }, (r) => results.push(r));
    await checks.first({ kind: "class", call: () => null, checkHealth: () => { if (++calls > 2) throw new Error(`call ${calls}`); } });
    await waitFor("four results", () => results.length >= 4, { timeoutMs: 5000 });
    checks.stop();
    const seen = results.length;
    assert.deepEqual(results.slice(0, 3).map((r) => r.error), [null, null, "call 3"]);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(results.length, seen, "no result after stop");

    const none: HealthCheckResult[] = [];
    const plain = new HealthChecks({ healthCheckPeriodS: 0.01, healthCheckTimeoutS: 1 }, (r) => none.push(r));
    await plain.first({ kind: "function", call: () => null });
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(none, []);
  });
});
