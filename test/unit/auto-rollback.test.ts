/**
 * The pure parts of automatic rollback on their own: when a rollout counts as
 * failed, what a rollback writes (and when there is none to make), the rollout
 * stage's settling of outcomes, and the guarded ops those writes become. The
 * whole loop, over many ticks, is auto-rollback-world.test.ts.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { RevisionBody, RevisionState } from "../../src/client/revision-policy.js";
import { autoRollbackTarget, planAutoRollback, rollbackMessage, rolloutFailure, type FailureInput } from "../../src/controller/auto-rollback.js";
import { revisionWriteOps } from "../../src/controller/decision-ops.js";
import { revisionsToRead, watchRollout, type WatchInput } from "../../src/controller/reconcile-revisions.js";
import { statusRecord } from "../../src/controller/reconcile-status.js";
import { parseRevisions } from "../../src/client/revisions.js";
import { Keys } from "../../src/shared/keys.js";
import type { DeploymentRecord, RolloutRecord } from "../../src/shared/records.js";
import { parseDeploymentSpec, type DeploymentSpecInput } from "../../src/spec/deployment-spec.js";

const NOW = 1_700_000_000_000;
const SOURCE = { host: "ctl-host", user: "controller:c1" };

function record(generation: number, codeVersion: string, input: Partial<DeploymentSpecInput> = {}): DeploymentRecord {
  const spec = parseDeploymentSpec({ name: "web", import: "web.ts", version: codeVersion, rollbackOnFailure: true, ...input });
  return { spec, codeVersion, configVersion: "cfg", generation, deployedAt: NOW };
}

/** A revisions hash as stored: `[codeVersion, state, extra body fields]` per revision, numbered from 1. */
function hashOf(revisions: Array<[string, RevisionState, Partial<RevisionBody>?]>, first = 1): Record<string, string> {
  const hash: Record<string, string> = {};
  revisions.forEach(([codeVersion, state, extra], i) => {
    const n = first + i;
    const r = record(n, codeVersion);
    const body: RevisionBody = { appliedAt: n, source: { host: "laptop", user: "ann" }, version: codeVersion, codeVersion, configVersion: "cfg", generation: n, spec: r.spec, ...extra };
    hash[`r:${n}`] = JSON.stringify(body);
    hash[`o:${n}`] = JSON.stringify(state);
    hash.next = String(n);
  });
  return hash;
}

const rolledOut: RevisionState = { outcome: "rolled out", at: 1, rolledOutAt: 1 };
const rolling: RevisionState = { outcome: "rolling out", at: 2 };

describe("rolloutFailure", () => {
  const base: FailureInput = { record: record(2, "v2"), failedStarts: 0, lastError: undefined, replaced: 0, updated: 0, target: 2, elapsedMs: 0 };

  it("says nothing without rollbackOnFailure, however badly the rollout goes", () => {
    assert.equal(rolloutFailure({ ...base, record: record(2, "v2", { rollbackOnFailure: false }), failedStarts: 50, elapsedMs: 10 ** 9 }), undefined);
    assert.equal(rolloutFailure({ ...base, record: record(2, "v2", { rollbackOnFailure: undefined }), failedStarts: 50 }), undefined);
  });

  it("fails after rolloutFailureThreshold failed starts and replacements, not before", () => {
    assert.equal(rolloutFailure({ ...base, failedStarts: 2, lastError: "boom" }), undefined);
    assert.equal(rolloutFailure({ ...base, failedStarts: 3, lastError: "boom" }), "3 failed start(s) of its replicas: boom");
    assert.equal(rolloutFailure({ ...base, failedStarts: 1, replaced: 2, lastError: "health check failed: sick" }), "1 failed start(s) and 2 replacement(s) of its replicas: health check failed: sick");
    assert.equal(rolloutFailure({ ...base, record: record(2, "v2", { rolloutFailureThreshold: 1 }), failedStarts: 1 }), "1 failed start(s) of its replicas: replica failed");
    assert.equal(rolloutFailure({ ...base, failedStarts: 5, updated: 2 }), undefined, "every replica serves: not a failure");
  });

  it("fails once rolloutTimeoutS has passed, naming how far it got", () => {
    const r = record(2, "v2", { rolloutTimeoutS: 30 });
    assert.equal(rolloutFailure({ ...base, record: r, elapsedMs: 29_999, updated: 1 }), undefined);
    assert.equal(rolloutFailure({ ...base, record: r, elapsedMs: 30_000, updated: 1 }), "not rolled out within 30 s (1/2 replicas running it)");
    assert.equal(rolloutFailure({ ...base, record: r, elapsedMs: 30_000, failedStarts: 1, lastError: "slow" }), "not rolled out within 30 s (0/2 replicas running it); last error: slow");
    assert.equal(rolloutFailure({ ...base, elapsedMs: 599_999 }), undefined, "600 s by default");
    assert.match(rolloutFailure({ ...base, elapsedMs: 600_000 }) ?? "", /within 600 s/);
  });
});

describe("planAutoRollback", () => {
  it("returns to the newest earlier revision that rolled out: its spec, code version and package, as a new generation and revision", () => {
    const hash = hashOf([
      ["v1", rolledOut],
      ["v2", rolledOut, { runtimeEnv: { hash: "a".repeat(64), bytes: 10 } }],
      ["v3", rolling],
    ]);
    const plan = planAutoRollback(record(3, "v3"), hash, "3 failed start(s) of its replicas: boom", NOW, SOURCE);
    assert.ok("write" in plan, JSON.stringify(plan));
    const w = plan.write;
    assert.equal(w.next, 3);
    assert.deepEqual([w.record.codeVersion, w.record.generation, w.record.spec.version, w.record.runtimeEnv?.bytes], ["v2", 4, "v2", 10]);
    assert.deepEqual(w.record.rolledBack, { failedRevision: 3, failedGeneration: 3, to: 2, error: "3 failed start(s) of its replicas: boom", at: NOW });
    assert.deepEqual([w.revision.rollbackOf, w.revision.generation, w.revision.version, w.revision.source, w.revision.runtimeEnv?.bytes], [2, 4, "v2", SOURCE, 10]);
    assert.deepEqual(w.state, { outcome: "rolling out", at: NOW });
    assert.deepEqual(w.failed, { revision: 3, state: { outcome: "failed", at: NOW, error: "3 failed start(s) of its replicas: boom" } });
    assert.deepEqual(w.drop, []);
    assert.equal(rollbackMessage(w.record.rolledBack!), "rolled back to revision 2: revision 3 failed: 3 failed start(s) of its replicas: boom");
  });

  it("skips revisions that never rolled out, and those with the failed one's code and spec", () => {
    const hash = hashOf([
      ["v1", rolledOut],
      ["v2", { outcome: "superseded", at: 2 }],
      ["v3", { outcome: "rolled back", at: 3, rolledOutAt: 3 }],
      ["v4", { outcome: "failed", at: 4, error: "x" }],
      ["v5", rolling],
    ]);
    const revisions = parseRevisions(hash);
    assert.equal(autoRollbackTarget(revisions, revisions[4]!)?.revision, 3, "rolled out once, later rolled back: still a target");
    const same = parseRevisions(hashOf([["v5", rolledOut], ["v5", rolling]]));
    assert.equal(autoRollbackTarget(same, same[1]!), undefined, "the same code and spec is no rollback");
  });

  it("makes none when nothing earlier rolled out, when the failed revision is itself a rollback, or when the revisions are not this generation's", () => {
    const none = (hash: Record<string, string>, generation: number, codeVersion: string): string => {
      const plan = planAutoRollback(record(generation, codeVersion), hash, "boom", NOW, SOURCE);
      assert.ok("none" in plan);
      return plan.none;
    };
    assert.equal(none(hashOf([["v1", rolling]]), 1, "v1"), "no revision before 1 rolled out");
    assert.equal(none(hashOf([["v1", { outcome: "failed", at: 1 }], ["v2", rolling]]), 2, "v2"), "no revision before 2 rolled out");
    assert.equal(none(hashOf([["v1", rolledOut], ["v2", rolledOut], ["v1", rolling, { rollbackOf: 1 }]]), 3, "v1"), "revision 3 is itself a rollback (of revision 1)");
    assert.equal(none(hashOf([["v1", rolledOut], ["v2", rolling]]), 5, "v2"), "its revision is not recorded");
    assert.equal(none({}, 1, "v1"), "its revision is not recorded");
  });

  it("keeps the history at its length: at least the default 10, never more than it holds", () => {
    const twelve = hashOf(Array.from({ length: 12 }, (_, i): [string, RevisionState] => [`v${i + 1}`, i === 11 ? rolling : rolledOut]), 9);
    const plan = planAutoRollback(record(20, "v12"), twelve, "boom", NOW, SOURCE);
    assert.ok("write" in plan);
    assert.deepEqual(plan.write.drop.sort(), ["o:9", "r:9"], "12 kept, a 13th added: the oldest goes");
    const three = planAutoRollback(record(3, "v3"), hashOf([["v1", rolledOut], ["v2", rolledOut], ["v3", rolling]]), "boom", NOW, SOURCE);
    assert.ok("write" in three && three.write.drop.length === 0);
  });
});

describe("revisionWriteOps", () => {
  const keys = new Keys("ops");

  it("guards an outcome by the state read and a rollback by the last revision number", () => {
    const outcome = revisionWriteOps({ kind: "outcome", deployment: "web", revision: 4, from: '{"outcome":"rolling out","at":1}', state: rolledOut }, keys);
    assert.deepEqual(outcome.guards, [[keys.revisions("web"), "o:4", '{"outcome":"rolling out","at":1}']]);
    assert.deepEqual(outcome.ops, [["HSET", keys.revisions("web"), "o:4", JSON.stringify(rolledOut)]]);

    const plan = planAutoRollback(record(3, "v3"), hashOf([["v1", rolledOut], ["v2", rolledOut], ["v3", rolling]]), "boom", NOW, SOURCE);
    assert.ok("write" in plan);
    const { guards, ops } = revisionWriteOps({ ...plan.write, drop: ["r:1", "o:1"] }, keys);
    assert.deepEqual(guards, [[keys.revisions("web"), "next", "3"]]);
    assert.deepEqual(ops.map((op) => [op[0], op[1], op[2]]), [
      ["HSET", keys.deployments, "web"],
      ["HSET", keys.revisions("web"), "next"],
      ["HDEL", keys.revisions("web"), "r:1"],
      ["HSET", keys.deploymentGenerations, "web"],
      ["INCR", keys.deploymentsVersion, undefined],
    ]);
    const fields = ops[1]!.slice(2);
    assert.deepEqual(fields.filter((_, i) => i % 2 === 0), ["next", "r:4", "o:4", "o:3"]);
    assert.equal(JSON.parse(ops[0]![3]!).generation, 4);
    for (const [, key] of [...ops, ...guards.map((g) => ["HGET", g[0]])]) assert.ok(key!.startsWith(`${keys.control}:`), "one hash tag: one fenced script");
  });
});

describe("stage: watch the rollout", () => {
  const backoff = { failures: 0, retryAt: 0 };
  const input = (over: Partial<WatchInput>): WatchInput => ({
    record: record(3, "v3"),
    previous: undefined,
    health: "UPDATING",
    backoff,
    progress: { updated: 0, target: 2 },
    replacing: [],
    revisions: undefined,
    now: NOW,
    ...over,
  });

  it("starts a record for a new generation and marks it done once HEALTHY", () => {
    const first = watchRollout(input({ previous: { generation: 2, since: 5, health: "HEALTHY", done: true, settled: "HEALTHY" } }));
    assert.deepEqual(first.rollout, { generation: 3, since: NOW, health: "UPDATING" });
    assert.equal(first.changed, true);
    const same = watchRollout(input({ previous: first.rollout, now: NOW + 1000 }));
    assert.equal(same.changed, false, "nothing new: nothing to write");
    const done = watchRollout(input({ previous: first.rollout, health: "HEALTHY", progress: { updated: 2, target: 2 } }));
    assert.deepEqual(done.rollout, { generation: 3, since: NOW, health: "HEALTHY", done: true });
  });

  it("reads the revisions only while a rollout runs or has an outcome to settle or a rollback to make", () => {
    const deployments = new Map([["web", record(3, "v3")], ["api", record(1, "a1")], ["new", record(7, "n7")], ["busy", record(2, "b2")]]);
    const rollouts = new Map<string, RolloutRecord>([
      ["web", { generation: 3, since: 0, health: "HEALTHY", done: true }],
      ["api", { generation: 1, since: 0, health: "HEALTHY", done: true, settled: "HEALTHY" }],
      ["new", { generation: 6, since: 0, health: "HEALTHY", done: true, settled: "HEALTHY" }],
      ["busy", { generation: 2, since: 0, health: "UPDATING" }],
      ["gone", { generation: 1, since: 0, health: "UPDATING" }],
    ]);
    assert.deepEqual(revisionsToRead(deployments, rollouts), ["web", "new", "busy"]);
    rollouts.set("api", { generation: 1, since: 0, health: "UPDATING", done: true, settled: "HEALTHY" });
    assert.deepEqual(revisionsToRead(deployments, rollouts), ["web", "new", "busy"], "rolled out and settled: autoscaling later costs no read");
    rollouts.set("api", { generation: 1, since: 0, health: "UNHEALTHY", done: true, settled: "HEALTHY" });
    assert.deepEqual(revisionsToRead(deployments, rollouts), ["web", "api", "new", "busy"], "a health to settle");
  });

  it("settles the revision of its generation from the health it saw, once", () => {
    const hash = hashOf([["v1", rolledOut], ["v2", rolledOut], ["v3", rolling]]);
    const previous: RolloutRecord = { generation: 3, since: NOW - 5000, health: "HEALTHY", done: true };
    const w = watchRollout(input({ previous, health: "HEALTHY", revisions: { views: new Map([["web", hash]]), source: SOURCE } }));
    assert.deepEqual(w.writes, [{ kind: "outcome", deployment: "web", revision: 3, from: hash["o:3"], state: { outcome: "rolled out", at: NOW, rolledOutAt: NOW } }]);
    assert.equal(w.rollout.settled, "HEALTHY");

    const failing = watchRollout(input({ previous: { generation: 3, since: NOW - 1000, health: "UNHEALTHY" }, health: "UNHEALTHY", backoff: { failures: 1, retryAt: 0, lastError: "boom" }, revisions: { views: new Map([["web", hash]]), source: SOURCE } }));
    assert.deepEqual(failing.writes.map((x) => x.kind === "outcome" && x.state), [{ outcome: "failed", at: NOW, error: "boom" }]);
    const older = watchRollout(input({ record: record(4, "v4"), previous: { generation: 4, since: 0, health: "HEALTHY", done: true }, health: "HEALTHY", revisions: { views: new Map([["web", hash]]), source: SOURCE } }));
    assert.deepEqual(older.writes, [], "the latest revision is of another generation: nothing to settle");
    assert.equal(older.rollout.settled, "HEALTHY", "and it is not read again");
  });

  it("judges a failed rollout once, then rolls it back with the revisions read", () => {
    const failing = { failures: 3, retryAt: NOW + 4000, lastError: "boom" };
    const judged = watchRollout(input({ previous: { generation: 3, since: NOW - 9000, health: "UNHEALTHY" }, health: "UNHEALTHY", backoff: failing }));
    assert.equal(judged.rollout.failure, "3 failed start(s) of its replicas: boom");
    assert.deepEqual(judged.events.map((e) => e.message), ["rollout of generation 3 failed: 3 failed start(s) of its replicas: boom"]);
    const again = watchRollout(input({ previous: judged.rollout, health: "UNHEALTHY", backoff: { ...failing, failures: 4 } }));
    assert.equal(again.rollout.failure, judged.rollout.failure, "judged once");

    const hash = hashOf([["v1", rolledOut], ["v2", rolledOut], ["v3", rolling]]);
    const back = watchRollout(input({ previous: judged.rollout, health: "UNHEALTHY", backoff: failing, revisions: { views: new Map([["web", hash]]), source: SOURCE } }));
    assert.deepEqual(back.writes.map((x) => x.kind), ["rollback"]);
    const atOnce = watchRollout(input({ previous: { generation: 3, since: NOW - 9000, health: "UNHEALTHY" }, health: "UNHEALTHY", backoff: failing, revisions: { views: new Map([["web", hash]]), source: SOURCE } }));
    assert.deepEqual(atOnce.writes.map((x) => x.kind), ["rollback"], "judged and rolled back in the same tick when the revisions are at hand");

    const recovered = watchRollout(input({ previous: judged.rollout, health: "HEALTHY", progress: { updated: 2, target: 2 }, revisions: { views: new Map([["web", hash]]), source: SOURCE } }));
    assert.deepEqual(recovered.writes.map((x) => x.kind), ["outcome"], "HEALTHY just now: settled, not rolled back");

    const first = hashOf([["v3", rolling]], 3);
    const stuck = watchRollout(input({ previous: judged.rollout, health: "UNHEALTHY", backoff: failing, revisions: { views: new Map([["web", first]]), source: SOURCE } }));
    assert.equal(stuck.rollout.noRollback, "no revision before 3 rolled out");
    assert.deepEqual(stuck.writes.map((x) => x.kind === "outcome" && x.state), [{ outcome: "failed", at: NOW, error: "3 failed start(s) of its replicas: boom" }]);
  });

  it("counts replacements of the new version while it rolls out, up to the threshold", () => {
    let previous: RolloutRecord | undefined;
    for (const replacing of [["a"], ["a", "b"], ["c"]]) {
      const w = watchRollout(input({ previous, replacing, health: "UPDATING", progress: { updated: 1, target: 2 } }));
      previous = w.rollout;
    }
    assert.deepEqual(previous?.replaced, ["a", "b", "c"]);
    assert.equal(previous?.failure, "0 failed start(s) and 3 replacement(s) of its replicas: replica failed");
  });
});

describe("status of a rolled back deployment", () => {
  it("says what was rolled back, first; a failed rollout not rolled back says why, last", () => {
    const note = { failedRevision: 3, failedGeneration: 3, to: 2, error: "3 failed start(s) of its replicas: boom", at: NOW };
    const base = { name: "web", counts: { target: 1, running: 1, updated: 1 }, codeVersion: "v2", generation: 4, backoff: { failures: 0, retryAt: 0 }, now: NOW };
    const healthy = statusRecord({ ...base, health: { status: "HEALTHY" }, rolledBack: note }, []);
    assert.equal(healthy.message, "rolled back to revision 2: revision 3 failed: 3 failed start(s) of its replicas: boom; 1/1 replicas running");
    assert.deepEqual(healthy.rolledBack, note);
    const stuck = statusRecord({ ...base, health: { status: "UNHEALTHY", failures: 3, lastError: "boom", retryInS: 4 }, rolloutFailed: { failure: "3 failed start(s)", reason: "no revision before 1 rolled out" } }, []);
    assert.equal(stuck.message, "3 failed start(s) of this version: boom; next attempt in 4 s; rollout failed, not rolled back: no revision before 1 rolled out");
    assert.equal(stuck.rolloutFailed, "3 failed start(s); not rolled back: no revision before 1 rolled out");
  });
});
