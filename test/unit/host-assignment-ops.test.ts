/**
 * hostAssignmentOps: each host's own copy of its assignments and its
 * generation, written in the leader's fenced write; and unwrittenDecisions,
 * which leaves out writes of what Redis already holds.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { STATUS_REFRESH_MS, STATUS_REFRESHES_PER_TICK, unwrittenDecisions } from "../../src/controller/decision-diff.js";
import { hostAssignmentOps } from "../../src/controller/host-assignment-ops.js";
import { noDecisions } from "../../src/controller/reconcile-types.js";
import { Keys } from "../../src/shared/keys.js";
import type { DeploymentStatusRecord, ReplicaAssignment } from "../../src/shared/records.js";

const keys = new Keys("hops");
const assignment = (id: string, host: string | null, extra: Partial<ReplicaAssignment> = {}): ReplicaAssignment =>
  ({ id, deployment: "app", codeVersion: "v1", version: "v1", host, desired: "run", resources: { CPU: 1 }, gpuIds: [], createdAt: 1, ...extra }) as ReplicaAssignment;

describe("hostAssignmentOps", () => {
  it("writes nothing and bumps no host when nothing changes", () => {
    assert.deepEqual(hostAssignmentOps(noDecisions(), new Map(), keys), { ops: [], hosts: [] });
  });

  it("writes a placed replica into its host's hash and bumps that host's generation only", () => {
    const a = assignment("r1", "h1");
    const { ops, hosts } = hostAssignmentOps({ ...noDecisions(), upsert: [a, assignment("r2", null)] }, new Map([["r2", assignment("r2", null)]]), keys);
    assert.deepEqual(hosts, ["h1"]);
    assert.deepEqual(ops, [
      ["HSET", keys.hostAssignments("h1"), "r1", JSON.stringify(a)],
      ["HINCRBY", keys.hostGenerations, "h1", "1"],
    ]);
  });

  it("deletes a removed replica from the hash of the host it was on, and a moved one from its old host", () => {
    const previous = new Map([
      ["gone", assignment("gone", "h1")],
      ["moved", assignment("moved", "h2")],
    ]);
    const moved = assignment("moved", "h3");
    const { ops, hosts } = hostAssignmentOps({ ...noDecisions(), upsert: [moved], remove: ["gone", "never-placed"] }, previous, keys);
    assert.deepEqual(new Set(hosts), new Set(["h1", "h2", "h3"]));
    assert.deepEqual(ops, [
      ["HSET", keys.hostAssignments("h3"), "moved", JSON.stringify(moved)],
      ["HDEL", keys.hostAssignments("h2"), "moved"],
      ["HDEL", keys.hostAssignments("h1"), "gone"],
      ["HINCRBY", keys.hostGenerations, "h3", "1"],
      ["HINCRBY", keys.hostGenerations, "h2", "1"],
      ["HINCRBY", keys.hostGenerations, "h1", "1"],
    ]);
  });

  it("drops a forgotten host's hash and generation, and tells it nothing", () => {
    const { ops, hosts } = hostAssignmentOps({ ...noDecisions(), remove: ["r"], forgetHosts: ["dead"] }, new Map([["r", assignment("r", "dead")]]), keys);
    assert.deepEqual(hosts, []);
    assert.deepEqual(ops, [
      ["DEL", keys.hostAssignments("dead")],
      ["HDEL", keys.hostGenerations, "dead"],
    ]);
  });

  it("keeps every key under the namespace's one hash tag (one fenced script)", () => {
    const { ops } = hostAssignmentOps({ ...noDecisions(), upsert: [assignment("a", "h1")], remove: ["b"], forgetHosts: ["h9"] }, new Map([["b", assignment("b", "h2")]]), keys);
    for (const [, key] of ops) assert.ok(key.startsWith(`${keys.control}:`), key);
  });
});

describe("unwrittenDecisions", () => {
  const status = (message: string, updatedAt: number): DeploymentStatusRecord => ({ name: "app", status: "HEALTHY", message, targetReplicas: 1, runningReplicas: 1, updatedReplicas: 1, codeVersion: "v1", generation: 1, failures: 0, retryAt: 0, updatedAt });
  const written = {
    assignments: new Map([["r1", assignment("r1", "h1")]]),
    statuses: new Map([["app", status("1/1 replicas running", 1)]]),
    memory: new Map([["app", { codeVersion: "v1", failures: 0, retryAt: 0, target: 1 }]]),
    autoscaler: new Map(),
  };

  it("leaves out assignments, statuses (whatever their time) and memory equal to what was written", () => {
    const d = { ...noDecisions(), upsert: [assignment("r1", "h1")], statuses: [status("1/1 replicas running", 2)], memory: new Map([["app", { codeVersion: "v1", failures: 0, retryAt: 0, target: 1 }]]) };
    const out = unwrittenDecisions(d, written);
    assert.deepEqual([out.upsert, out.statuses, [...out.memory]], [[], [], []]);
  });

  it("writes a status that says the same again once it is STATUS_REFRESH_MS old", () => {
    const d = { ...noDecisions(), statuses: [status("1/1 replicas running", 1 + STATUS_REFRESH_MS)] };
    assert.equal(unwrittenDecisions(d, written).statuses.length, 1);
  });

  it("refreshes at most STATUS_REFRESHES_PER_TICK unchanged statuses in a tick, the oldest first", () => {
    const names = Array.from({ length: STATUS_REFRESHES_PER_TICK + 10 }, (_, i) => `d${i}`);
    const old = new Map(names.map((name, i) => [name, { ...status("same", 1000 - i), name }]));
    const d = { ...noDecisions(), statuses: names.map((name) => ({ ...status("same", 5000), name })) };
    const out = unwrittenDecisions(d, { ...written, statuses: old }).statuses.map((s) => s.name);
    assert.equal(out.length, STATUS_REFRESHES_PER_TICK);
    assert.ok(out.includes(names[names.length - 1]!) && !out.includes("d0"), "the oldest are refreshed first");
  });

  it("keeps what changed, and every removal", () => {
    const drained = assignment("r1", "h1", { desired: "drain" });
    const d = { ...noDecisions(), upsert: [drained], remove: ["r0"], statuses: [status("0/1 replicas running", 2)], memory: new Map([["app", { codeVersion: "v2", failures: 0, retryAt: 0, target: 1 }]]) };
    const out = unwrittenDecisions(d, written);
    assert.deepEqual(out.upsert, [drained]);
    assert.deepEqual(out.remove, ["r0"]);
    assert.equal(out.statuses.length, 1);
    assert.deepEqual([...out.memory.keys()], ["app"]);
  });
});
