/**
 * Revisions on the real Redis: one per applied change, numbered from 1, none for
 * a no-op; outcomes marked and settled from the status; superseded and rolled
 * back; the history limit; concurrent applies never share a number; rollback
 * choices and their errors.
 */
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { applyDeployments, deleteDeployment, waitForRollout } from "../../src/client/deployment-store.js";
import { localSource, markFailed, markRolledOut, revisionHistoryLimit } from "../../src/client/revision-log.js";
import { readHistory, readRevisions } from "../../src/client/revisions.js";
import { rollbackDeployment } from "../../src/client/rollback.js";
import { FlotillaError } from "../../src/errors.js";
import { Keys } from "../../src/shared/keys.js";
import type { DeploymentStatusRecord } from "../../src/shared/records.js";
import { parseDeploymentSpec, type DeploymentSpecInput } from "../../src/spec/deployment-spec.js";
import { writeStatus } from "../helpers/status-record.js";
import { cleanupNamespace, testNamespace, testRedis } from "../helpers/redis.js";

const spec = (name: string, extra: Partial<DeploymentSpecInput> = {}) => parseDeploymentSpec({ name, import: "echo.ts", ...extra });

function isCode(code: string, message?: RegExp) {
  return (err: unknown) => err instanceof FlotillaError && err.code === code && (!message || message.test(err.message));
}

describe("revisions", () => {
  const namespace = testNamespace("revisions");
  const keys = new Keys(namespace);
  const redis = testRedis();
  after(async () => {
    redis.disconnect();
    await cleanupNamespace(namespace);
  });

  const setStatus = (name: string, generation: number, status: DeploymentStatusRecord["status"], extra: Partial<DeploymentStatusRecord> = {}): Promise<void> =>
    writeStatus(redis, keys, name, generation, status, extra);

  it("records one revision per change, numbered from 1, with source, version and the full spec; none for a no-op", async () => {
    const [r1] = await applyDeployments(redis, keys, [spec("a", { version: "1" })], 1000);
    assert.equal(r1?.revision, 1);
    const [same] = await applyDeployments(redis, keys, [spec("a", { version: "1" })], 2000);
    assert.equal(same?.outcome, "unchanged");
    assert.equal(same?.revision, undefined);
    const [r2] = await applyDeployments(redis, keys, [spec("a", { version: "1", userConfig: { t: 1 } })], 3000, { source: { host: "laptop", user: "ann" } });
    assert.equal(r2?.revision, 2);
    const revisions = await readRevisions(redis, keys, "a");
    assert.deepEqual(revisions.map((r) => r.revision), [1, 2]);
    const [first, second] = revisions;
    assert.equal(first?.appliedAt, 1000);
    assert.deepEqual(first?.source, localSource());
    assert.equal(first?.version, "1");
    assert.equal(first?.generation, 1);
    assert.equal(first?.outcome, "superseded", "a revision still rolling out when the next is applied is superseded");
    assert.deepEqual(second?.source, { host: "laptop", user: "ann" });
    assert.deepEqual(second?.spec, spec("a", { version: "1", userConfig: { t: 1 } }));
    assert.equal(second?.outcome, "rolling out");
    assert.equal(second?.generation, 2);
  });

  it("marks outcomes only forward: rolled out, failed (which may still roll out), never back from superseded", async () => {
    await applyDeployments(redis, keys, [spec("b", { version: "1" })]);
    assert.equal(await markFailed(redis, keys, "b", 1, "constructor threw"), true);
    let [rev] = await readRevisions(redis, keys, "b");
    assert.equal(rev?.outcome, "failed");
    assert.equal(rev?.error, "constructor threw");
    assert.equal(await markFailed(redis, keys, "b", 1, "again"), false, "failed once is enough");
    assert.equal(await markRolledOut(redis, keys, "b", 1), true, "a failed revision whose replicas recover rolled out");
    [rev] = await readRevisions(redis, keys, "b");
    assert.equal(rev?.outcome, "rolled out");
    assert.equal(typeof rev?.rolledOutAt, "number");
    await applyDeployments(redis, keys, [spec("b", { version: "2" })]);
    await applyDeployments(redis, keys, [spec("b", { version: "3" })]);
    assert.equal(await markRolledOut(redis, keys, "b", 2), false, "superseded stays superseded");
    assert.equal(await markRolledOut(redis, keys, "b", 99), false, "an unknown revision is not created");
    assert.deepEqual((await readRevisions(redis, keys, "b")).map((r) => r.outcome), ["rolled out", "superseded", "rolling out"]);
  });

  it("settles the current revision from the status when the history is read (level-triggered)", async () => {
    await applyDeployments(redis, keys, [spec("c", { version: "1" })]);
    await setStatus("c", 1, "UPDATING");
    assert.equal((await readHistory(redis, keys, "c")).revisions[0]?.outcome, "rolling out");
    await setStatus("c", 1, "UNHEALTHY", { lastError: "module not found" });
    let history = await readHistory(redis, keys, "c");
    assert.equal(history.revisions[0]?.outcome, "failed");
    assert.equal(history.revisions[0]?.error, "module not found");
    await setStatus("c", 1, "HEALTHY");
    history = await readHistory(redis, keys, "c");
    assert.equal(history.revisions[0]?.outcome, "rolled out");
    assert.equal((await readRevisions(redis, keys, "c"))[0]?.outcome, "rolled out", "the settled outcome was stored");
    // A status of an older generation says nothing about a newer revision.
    await applyDeployments(redis, keys, [spec("c", { version: "2" })]);
    assert.equal((await readHistory(redis, keys, "c")).revisions[1]?.outcome, "rolling out");
  });

  it("waitForRollout marks the revisions it waited on", async () => {
    const [ok] = await applyDeployments(redis, keys, [spec("d", { version: "1" })]);
    await setStatus("d", 1, "HEALTHY");
    await waitForRollout(redis, keys, [ok as NonNullable<typeof ok>], { timeoutMs: 2000, pollMs: 20 });
    assert.equal((await readRevisions(redis, keys, "d"))[0]?.outcome, "rolled out");
    const [bad] = await applyDeployments(redis, keys, [spec("d", { version: "2" })]);
    await setStatus("d", 2, "UNHEALTHY", { lastError: "boom" });
    await assert.rejects(waitForRollout(redis, keys, [bad as NonNullable<typeof bad>], { timeoutMs: 2000, pollMs: 20 }), isCode("ROLLOUT_FAILED"));
    const [, second] = await readRevisions(redis, keys, "d");
    assert.equal(second?.outcome, "failed");
    assert.equal(second?.error, "boom");
  });

  it("keeps the last N revisions (FLOTILLA_REVISION_HISTORY or the option) and keeps numbering", async () => {
    for (let v = 1; v <= 7; v++) await applyDeployments(redis, keys, [spec("e", { version: String(v) })], Date.now(), { keep: 3 });
    assert.deepEqual((await readRevisions(redis, keys, "e")).map((r) => r.revision), [5, 6, 7]);
    assert.equal(revisionHistoryLimit({}), 10);
    assert.equal(revisionHistoryLimit({ FLOTILLA_REVISION_HISTORY: "25" }), 25);
    for (const bad of ["0", "x", "1.5", "1001"]) assert.throws(() => revisionHistoryLimit({ FLOTILLA_REVISION_HISTORY: bad }), /FLOTILLA_REVISION_HISTORY/);
  });

  it("gives every concurrent apply its own number", async () => {
    await Promise.all(Array.from({ length: 20 }, (_, i) => applyDeployments(redis, keys, [spec("f", { version: String(i) })])));
    const numbers = (await readRevisions(redis, keys, "f")).map((r) => r.revision);
    assert.equal(new Set(numbers).size, numbers.length);
    assert.equal(Math.max(...numbers), 20);
  });

  it("rolls back to the last revision that rolled out, names its source and marks the one it replaced", async () => {
    await applyDeployments(redis, keys, [spec("g", { version: "1" })]);
    await markRolledOut(redis, keys, "g", 1);
    await applyDeployments(redis, keys, [spec("g", { version: "2" })]);
    await markFailed(redis, keys, "g", 2, "boom");
    await applyDeployments(redis, keys, [spec("g", { version: "3" })]);
    await markFailed(redis, keys, "g", 3, "boom again");

    const result = await rollbackDeployment(redis, keys, "g", { source: { host: "h", user: "u" } });
    assert.deepEqual({ revision: result.revision, rollbackOf: result.rollbackOf, from: result.from, rollout: result.rollout }, { revision: 4, rollbackOf: 1, from: 3, rollout: true });
    const revisions = await readRevisions(redis, keys, "g");
    assert.deepEqual(revisions.map((r) => [r.revision, r.outcome, r.version, r.rollbackOf ?? null]), [
      [1, "rolled out", "1", null],
      [2, "failed", "2", null],
      [3, "rolled back", "3", null],
      [4, "rolling out", "1", 1],
    ]);
    assert.equal(revisions[2]?.error, "boom again", "a rolled back revision keeps why it failed");
    assert.deepEqual(revisions[3]?.spec, spec("g", { version: "1" }));

    // Revision 4 rolls out; rolling back again returns to the newest earlier revision that rolled out with another spec.
    await markRolledOut(redis, keys, "g", 4);
    await assert.rejects(rollbackDeployment(redis, keys, "g"), isCode("NO_ROLLBACK_TARGET", /nothing to roll back to/), "revision 1 has the deployed spec; 2 and 3 never rolled out");
    const explicit = await rollbackDeployment(redis, keys, "g", { to: 2 });
    assert.equal(explicit.rollbackOf, 2);
    assert.equal(explicit.revision, 5);
    await assert.rejects(rollbackDeployment(redis, keys, "g", { to: 5 }), isCode("NO_ROLLBACK_TARGET", /deployed now/));
    await assert.rejects(rollbackDeployment(redis, keys, "g", { to: 42 }), isCode("NOT_FOUND", /no revision 42 \(kept: 1-5\)/));
    await assert.rejects(rollbackDeployment(redis, keys, "nope"), isCode("NOT_FOUND", /no deployment named 'nope'/));
    await assert.rejects(readHistory(redis, keys, "nope"), isCode("NOT_FOUND"));
  });

  it("has nothing to roll back to for a new deployment, and forgets the history with the deployment", async () => {
    await applyDeployments(redis, keys, [spec("h", { version: "1" })]);
    await assert.rejects(rollbackDeployment(redis, keys, "h"), isCode("NO_ROLLBACK_TARGET"));
    await deleteDeployment(redis, keys, "h");
    await assert.rejects(readHistory(redis, keys, "h"), isCode("NOT_FOUND"));
    const [again] = await applyDeployments(redis, keys, [spec("h", { version: "1" })]);
    assert.equal(again?.revision, 1, "a deployment created again starts from revision 1");
  });
});
