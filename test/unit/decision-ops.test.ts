/**
 * decisionOps: the Redis writes that carry out a tick's decisions. The
 * reconcile simulation applies the same ops; these tests pin down their shape.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { initialAutoscalerState } from "../../src/autoscaler/policy.js";
import { decisionOps, FIELDS_PER_OP } from "../../src/controller/decision-ops.js";
import { noDecisions } from "../../src/controller/reconcile-types.js";
import { Keys } from "../../src/shared/keys.js";
import type { ControllerRecord, DeploymentStatusRecord, ReplicaAssignment } from "../../src/shared/records.js";

const keys = new Keys("ops");

describe("decisionOps", () => {
  it("writes nothing for no decisions", () => {
    assert.deepEqual(decisionOps(noDecisions(), keys), []);
  });

  it("writes assignments, statuses, the controller's memory and autoscaler state as JSON, and deletes what goes", () => {
    const a = { id: "app-1", deployment: "app", host: null } as ReplicaAssignment;
    const s = { name: "app", status: "HEALTHY" } as DeploymentStatusRecord;
    const memory: ControllerRecord = { codeVersion: "v1", failures: 1, retryAt: 5, target: 2 };
    const st = initialAutoscalerState();
    const d = { ...noDecisions(), upsert: [a], remove: ["app-0"], statuses: [s], memory: new Map([["app", memory]]), autoscaler: new Map([["app", st]]), forget: ["old"], forgetHosts: ["h-dead"] };
    assert.deepEqual(decisionOps(d, keys), [
      ["HSET", keys.replicas, "app-1", JSON.stringify(a)],
      ["HDEL", keys.replicas, "app-0"],
      ["HDEL", keys.replicaStatus, "app-0"],
      ["HSET", keys.deploymentStatus, "app", JSON.stringify(s)],
      ["HSET", keys.controllerRecords, "app", JSON.stringify(memory)],
      ["HSET", keys.autoscaler, "app", JSON.stringify(st)],
      ["HDEL", keys.deploymentStatus, "old"],
      ["HDEL", keys.controllerRecords, "old"],
      ["HDEL", keys.autoscaler, "old"],
      ["HDEL", keys.hosts, "h-dead"],
    ]);
  });

  it("keeps the controller's memory out of the status users read", () => {
    const d = { ...noDecisions(), memory: new Map([["app", { codeVersion: "v1", failures: 0, retryAt: 0, target: 1 }]]) };
    const ops = decisionOps(d, keys);
    assert.deepEqual(ops.map((op) => op[1]), [keys.controllerRecords]);
    assert.notEqual(keys.controllerRecords, keys.deploymentStatus);
  });

  it("puts every key under the namespace's one hash tag (the fenced apply is one script)", () => {
    const d = { ...noDecisions(), upsert: [{ id: "x" } as ReplicaAssignment], remove: ["y"], forget: ["z"], forgetHosts: ["h"] };
    for (const [, key] of decisionOps(d, keys)) assert.ok(key.startsWith(`${keys.control}:`), key);
  });
});

describe("decisionOps at fleet size", () => {
  it("splits a write of many fields into ops of at most FIELDS_PER_OP fields (Lua's unpack takes about 8,000 values)", () => {
    const upsert = Array.from({ length: 2500 }, (_, i) => ({ id: `r${i}`, deployment: "app", host: null }) as ReplicaAssignment);
    const remove = Array.from({ length: 1001 }, (_, i) => `gone${i}`);
    const ops = decisionOps({ ...noDecisions(), upsert, remove }, keys);
    const hsets = ops.filter((op) => op[0] === "HSET" && op[1] === keys.replicas);
    assert.deepEqual(hsets.map((op) => (op.length - 2) / 2), [FIELDS_PER_OP, FIELDS_PER_OP, 500]);
    assert.deepEqual(new Set(hsets.flatMap((op) => op.slice(2).filter((_, i) => i % 2 === 0))).size, 2500);
    const hdels = ops.filter((op) => op[0] === "HDEL" && op[1] === keys.replicas);
    assert.deepEqual(hdels.map((op) => op.length - 2), [FIELDS_PER_OP, 1]);
  });
});
