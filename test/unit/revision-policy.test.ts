/**
 * The pure revision decisions: the outcome a status settles, and the rollback
 * target, checked over thousands of seeded random histories against what a
 * user expects (the newest earlier revision that rolled out with another spec).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { chooseRollbackTarget, settledOutcome, type Revision, type RevisionOutcome } from "../../src/client/revision-policy.js";
import { FlotillaError } from "../../src/errors.js";
import type { DeploymentStatusRecord } from "../../src/shared/records.js";
import { parseDeploymentSpec } from "../../src/spec/deployment-spec.js";
import { mulberry32 } from "../helpers/prng.js";

const spec = (version: string) => parseDeploymentSpec({ name: "web", import: "web.ts", version });

function status(generation: number, health: DeploymentStatusRecord["status"], lastError?: string): DeploymentStatusRecord {
  return { name: "web", status: health, message: `${health}!`, targetReplicas: 1, runningReplicas: 0, updatedReplicas: 0, codeVersion: "c", generation, failures: 0, retryAt: 0, updatedAt: 0, ...(lastError ? { lastError } : {}) };
}

function revision(n: number, version: string, outcome: RevisionOutcome, rolledOut: boolean): Revision {
  return {
    revision: n,
    appliedAt: n,
    source: { host: "h", user: "u" },
    version,
    codeVersion: version,
    configVersion: "x",
    generation: n,
    spec: spec(version),
    outcome,
    at: n,
    ...(rolledOut ? { rolledOutAt: n } : {}),
  };
}

describe("settledOutcome", () => {
  it("settles only a revision of the status's generation, and only forward", () => {
    const rolling = { generation: 3, outcome: "rolling out" as const };
    assert.deepEqual(settledOutcome(status(3, "HEALTHY"), rolling), { outcome: "rolled out" });
    assert.deepEqual(settledOutcome(status(3, "UNHEALTHY", "constructor threw"), rolling), { outcome: "failed", error: "constructor threw" });
    assert.deepEqual(settledOutcome(status(3, "UNHEALTHY"), rolling), { outcome: "failed", error: "UNHEALTHY!" });
    assert.equal(settledOutcome(status(3, "UPDATING"), rolling), undefined);
    assert.equal(settledOutcome(status(2, "HEALTHY"), rolling), undefined, "an older generation's HEALTHY is not this revision's");
    assert.equal(settledOutcome(status(4, "HEALTHY"), rolling), undefined);
    assert.equal(settledOutcome(undefined, rolling), undefined);
    assert.deepEqual(settledOutcome(status(3, "HEALTHY"), { generation: 3, outcome: "failed" }), { outcome: "rolled out" }, "a failed revision that recovers rolled out");
    for (const outcome of ["rolled out", "rolled back", "superseded"] as const) {
      for (const health of ["HEALTHY", "UNHEALTHY", "UPDATING", "DELETING"] as const) {
        assert.equal(settledOutcome(status(3, health), { generation: 3, outcome }), undefined, `${outcome} stays under ${health}`);
      }
    }
  });
});

describe("chooseRollbackTarget", () => {
  it("explains why there is nothing to roll back to, or no such revision", () => {
    const code = (fn: () => unknown) => {
      try {
        fn();
      } catch (err) {
        return err instanceof FlotillaError ? `${err.code}: ${err.message}` : String(err);
      }
      return "no error";
    };
    assert.match(code(() => chooseRollbackTarget("web", [], spec("1"))), /^NO_ROLLBACK_TARGET: .*no revisions recorded/);
    const history = [revision(4, "1", "rolled out", true), revision(5, "2", "failed", false)];
    assert.match(code(() => chooseRollbackTarget("web", history, spec("2"), 3)), /^NOT_FOUND: deployment 'web' has no revision 3 \(kept: 4-5\)/);
    assert.match(code(() => chooseRollbackTarget("web", history, spec("2"), 5)), /^NO_ROLLBACK_TARGET: revision 5 .* deployed now/);
    assert.equal(chooseRollbackTarget("web", history, spec("2")).revision, 4);
    assert.match(code(() => chooseRollbackTarget("web", [revision(1, "1", "rolled out", true)], spec("1"))), /^NO_ROLLBACK_TARGET/);
  });

  it("picks the newest earlier revision that rolled out with another spec, over random histories", () => {
    const outcomes: RevisionOutcome[] = ["rolled out", "failed", "rolled back", "superseded"];
    for (let seed = 1; seed <= 3000; seed++) {
      const rand = mulberry32(seed);
      const n = 1 + Math.floor(rand() * 12);
      const first = 1 + Math.floor(rand() * 5);
      const history: Revision[] = [];
      for (let i = 0; i < n; i++) {
        const outcome = i === n - 1 ? ("rolling out" as const) : (outcomes[Math.floor(rand() * outcomes.length)] as RevisionOutcome);
        const rolledOut = outcome === "rolled out" || (outcome === "rolled back" && rand() < 0.5);
        history.push(revision(first + i, String(Math.floor(rand() * 4)), outcome, rolledOut));
      }
      const deployed = (history[history.length - 1] as Revision).spec;
      const expected = [...history].slice(0, -1).reverse().find((r) => r.rolledOutAt !== undefined && r.version !== deployed.version);
      let chosen: Revision | undefined;
      try {
        chosen = chooseRollbackTarget("web", history, deployed);
      } catch (err) {
        assert.ok(err instanceof FlotillaError && err.code === "NO_ROLLBACK_TARGET", `seed ${seed}: ${String(err)}`);
      }
      assert.equal(chosen?.revision, expected?.revision, `seed ${seed}`);
      if (chosen) {
        assert.ok(chosen.revision < (history[history.length - 1] as Revision).revision, `seed ${seed}: the target is older than the current revision`);
        assert.notEqual(chosen.version, deployed.version, `seed ${seed}: the target changes something`);
      }
    }
  });
});
