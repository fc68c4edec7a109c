/**
 * Each stage of a reconcile tick on its own, with small hand-made inputs. The
 * whole tick, driven over many steps, is reconcile.test.ts.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { initialAutoscalerState } from "../../src/autoscaler/policy.js";
import { drainStranded, placeReplicas } from "../../src/controller/reconcile-placement.js";
import { classifyReplicas } from "../../src/controller/reconcile-replicas.js";
import { newReplica, progressOf, rolloutStep } from "../../src/controller/reconcile-rollout.js";
import { backoffAfter, backoffSettled, scaleTarget } from "../../src/controller/reconcile-scaling.js";
import { deletingDraft, healthOf, statusMessage, statusRecord } from "../../src/controller/reconcile-status.js";
import type { ObservedHost } from "../../src/controller/reconcile-types.js";
import type { PlannerReplica } from "../../src/controller/rollout-planner.js";
import type { ControllerRecord, DeploymentRecord, PendingReason, ReplicaAssignment, ReplicaStatus } from "../../src/shared/records.js";
import { parseDeploymentSpec, type DeploymentSpecInput } from "../../src/spec/deployment-spec.js";

const NOW = 1_700_000_000_000;

function record(input: Partial<DeploymentSpecInput> = {}, codeVersion = "v2"): DeploymentRecord {
  return { spec: parseDeploymentSpec({ name: "app", import: "app.ts", numReplicas: 2, ...input }), codeVersion, configVersion: "c", generation: 3, deployedAt: NOW };
}

function host(id: string, extra: Partial<ObservedHost> = {}): ObservedHost {
  return { id, hostname: id, pid: 1, resources: { CPU: 4 }, gpuDevices: 0, startedAt: 0, lastHeartbeatAt: NOW, draining: false, emptySince: null, alive: true, ...extra };
}

function replica(id: string, hostId: string | null, extra: Partial<ReplicaAssignment> = {}): ReplicaAssignment {
  return { id, deployment: "app", codeVersion: "v2", version: "v2", host: hostId, desired: "run", resources: { CPU: 1, GPU: 0 }, gpuIds: [], createdAt: NOW, ...extra };
}

function status(id: string, state: ReplicaStatus["state"], extra: Partial<ReplicaStatus> = {}): ReplicaStatus {
  return { id, deployment: "app", host: "h1", state, codeVersion: "v2", configVersion: "c", pid: 9, workerId: `w-${id}`, inflight: 0, startedAt: NOW, updatedAt: NOW, ...extra };
}

function planned(id: string, phase: PlannerReplica["phase"], extra: Partial<PlannerReplica> = {}): PlannerReplica {
  return { id, codeVersion: "v2", phase, inflight: 0, createdAt: NOW, ...extra };
}

describe("stage: classify replicas", () => {
  const hosts = new Map([["h1", host("h1")], ["h2", host("h2", { draining: true })]]);

  it("removes replicas lost with their host and releases the locks of those that had a worker", () => {
    const c = classifyReplicas("app", [replica("a", "gone"), replica("b", "gone")], record(), hosts, new Map([["a", status("a", "running")], ["b", status("b", "starting", { workerId: null })]]));
    assert.deepEqual(c.remove, ["a", "b"]);
    assert.deepEqual(c.releaseLocks, [{ deployment: "app", workerId: "w-a" }]);
    assert.equal(c.events.length, 2);
    assert.deepEqual(c.live, []);
  });

  it("counts failed starts of the current version only, with the last error", () => {
    const statuses = new Map([
      ["a", status("a", "failed", { error: "boom" })],
      ["b", status("b", "failed", { codeVersion: "v1" })],
      ["c", status("c", "stopped")],
    ]);
    const c = classifyReplicas("app", [replica("a", "h1"), replica("b", "h1", { codeVersion: "v1" }), replica("c", "h1")], record(), hosts, statuses);
    assert.deepEqual(c.remove, ["a", "b", "c"]);
    assert.equal(c.newFailures, 1);
    assert.equal(c.lastError, "boom");
  });

  it("removes a drained replica that never ran, keeps one that drains", () => {
    const c = classifyReplicas("app", [replica("never", "h1", { desired: "drain" }), replica("drains", "h1", { desired: "drain" })], record(), hosts, new Map([["drains", status("drains", "draining")]]));
    assert.deepEqual(c.remove, ["never"]);
    assert.deepEqual(c.planned, [planned("drains", "draining")]);
  });

  it("marks a replica on a draining host mustMove, keeping its real version", () => {
    const c = classifyReplicas("app", [replica("a", "h2"), replica("b", "h1"), replica("p", null)], record(), hosts, new Map([["a", status("a", "running", { inflight: 2 })]]));
    assert.deepEqual(c.planned, [planned("a", "serving", { inflight: 2, mustMove: true }), planned("b", "starting"), planned("p", "pending")]);
    assert.deepEqual(c.remove, []);
  });
});

describe("stage: scale", () => {
  const autoscalingConfig = { minReplicas: 1, maxReplicas: 6, upscaleDelayS: 0, downscaleDelayS: 0, lookBackPeriodS: 5, targetNumOngoingRequestsPerReplica: 2 };
  const base = { memory: undefined, autoscaler: undefined, queue: undefined, inflight: 0, serving: 0, now: NOW };

  it("uses the fixed count without autoscaling", () => {
    assert.deepEqual(scaleTarget({ ...base, record: record({ numReplicas: 4 }) }), { target: 4 });
  });

  it("starts from the remembered target, clamped to the bounds, and samples demand", () => {
    const memory: ControllerRecord = { codeVersion: "v2", failures: 0, retryAt: 0, target: 9 };
    const s = scaleTarget({ ...base, record: record({ numReplicas: undefined, autoscalingConfig }), memory, queue: { waiting: 20, active: 0, failed: 0 }, serving: 6 });
    assert.ok(s.state && s.state.samples.length === 1, "a sample is taken");
    assert.equal(s.target, 6, "at most maxReplicas");
    assert.equal(s.autoscaling?.demand, 20);
  });

  it("takes no sample within the metrics interval and keeps the remembered view", () => {
    const st = initialAutoscalerState();
    st.samples.push({ at: NOW - 10, sum: 1, count: 1 });
    const memory: ControllerRecord = { codeVersion: "v2", failures: 0, retryAt: 0, target: 3, autoscaling: { demand: 5, desired: 3 } };
    const s = scaleTarget({ ...base, record: record({ numReplicas: undefined, autoscalingConfig }), memory, autoscaler: st });
    assert.deepEqual(s, { target: 3, autoscaling: { demand: 5, desired: 3 } });
  });
});

describe("stage: back-off", () => {
  const memory: ControllerRecord = { codeVersion: "v2", failures: 2, retryAt: NOW + 500, lastError: "old", target: 2 };

  it("adds new failures to the remembered ones of the same version and waits longer", () => {
    assert.deepEqual(backoffAfter(record(), memory, 1, "new", NOW), { failures: 3, retryAt: NOW + 4000, lastError: "new" });
    assert.deepEqual(backoffAfter(record(), memory, 0, undefined, NOW), { failures: 2, retryAt: NOW + 500, lastError: "old" });
  });

  it("starts a new version with a clean slate", () => {
    assert.deepEqual(backoffAfter(record({}, "v3"), memory, 0, undefined, NOW), { failures: 0, retryAt: 0 });
  });

  it("forgives failures once converged without new ones, keeping the retry time", () => {
    const b = { failures: 2, retryAt: 7, lastError: "x" };
    assert.deepEqual(backoffSettled(b, true, 0), { failures: 0, retryAt: 7 });
    assert.equal(backoffSettled(b, true, 1), b);
    assert.equal(backoffSettled(b, false, 0), b);
  });
});

describe("stage: roll out", () => {
  it("starts replicas of the current version and drains or drops what the planner names", () => {
    let n = 0;
    const live = [replica("old", "h1", { codeVersion: "v1" }), replica("extra", null, { codeVersion: "v1" })];
    const step = rolloutStep(record(), live, [planned("old", "serving", { codeVersion: "v1" }), planned("extra", "pending", { codeVersion: "v1" })], 1, true, () => `new-${++n}`, NOW);
    assert.deepEqual(step.drop, ["extra"]);
    assert.deepEqual(step.start, [newReplica("new-1", record(), NOW)]);
    assert.deepEqual(step.drain, [], "the serving old replica waits for its successor");
    assert.equal(step.start[0]?.host, null);
  });

  it("counts a mustMove replica as not updated and as old left", () => {
    const p = progressOf(record(), [planned("a", "serving", { mustMove: true }), planned("b", "serving"), planned("c", "starting")], [], 2);
    assert.deepEqual(p, { target: 2, running: 2, updated: 1, oldLeft: true });
    assert.equal(progressOf(record(), [planned("a", "serving", { mustMove: true }), planned("b", "serving")], ["a"], 2).oldLeft, false);
  });
});

describe("stage: place", () => {
  it("places what fits, keeps the rest pending with a reason, and rewrites an unchanged reason never", () => {
    const big = replica("big", null, { resources: { CPU: 8 } });
    const first = placeReplicas([host("h1")], [replica("small", null), big], []);
    assert.deepEqual(first.updates.map((a) => [a.id, a.host]), [["small", "h1"], ["big", null]]);
    const reason: PendingReason = { kind: "resources", needs: { CPU: 8 } };
    assert.deepEqual(first.pending, new Map([["app", [reason]]]));
    const again = placeReplicas([host("h1")], [{ ...big, pendingReason: reason }], []);
    assert.deepEqual(again.updates, [], "the same reason is not written again");
  });

  it("does not place replicas meant to drain, nor on dead or draining hosts", () => {
    const step = placeReplicas([host("dead", { alive: false }), host("leaving", { draining: true })], [replica("a", null), replica("b", null, { desired: "drain" })], []);
    assert.deepEqual(step.updates.map((a) => [a.id, a.host]), [["a", null]]);
    assert.deepEqual(step.pending.get("app"), [{ kind: "no-hosts" }]);
  });

  it("drains a draining host's replicas at once, one for each successor that cannot be placed", () => {
    const hosts = [host("h1", { draining: true })];
    const current = [replica("a", "h1"), replica("b", "h1"), replica("c", "h1", { desired: "drain" })];
    const drains = drainStranded(hosts, current, new Map([["app", [{ kind: "no-hosts" } as PendingReason]]]));
    assert.deepEqual(drains.map((a) => [a.id, a.desired]), [["a", "drain"]]);
    assert.deepEqual(drainStranded([host("h1")], current, new Map([["app", [{ kind: "no-hosts" } as PendingReason]]])), []);
  });
});

describe("stage: report", () => {
  const counts = { target: 3, running: 3, updated: 2 };

  it("is UNHEALTHY while failing short of the target, HEALTHY when converged, else UPDATING", () => {
    assert.deepEqual(healthOf({ ...counts, oldLeft: false }, { failures: 2, retryAt: NOW + 1500, lastError: "e" }, NOW), { status: "UNHEALTHY", failures: 2, lastError: "e", retryInS: 2 });
    assert.deepEqual(healthOf({ ...counts, updated: 3, oldLeft: false }, { failures: 0, retryAt: 0 }, NOW), { status: "HEALTHY" });
    assert.deepEqual(healthOf({ ...counts, updated: 3, oldLeft: true }, { failures: 0, retryAt: 0 }, NOW), { status: "UPDATING" });
  });

  it("writes the message in one place, pending reasons as people read them", () => {
    const gpu: PendingReason = { kind: "resources", needs: { GPU: 1 } };
    assert.equal(statusMessage({ status: "UPDATING" }, counts, [gpu, gpu]), "2/3 replicas running the current version; 2 pending: needs 1 GPU, no host has 1 free");
    assert.equal(statusMessage({ status: "HEALTHY" }, { ...counts, updated: 3 }, []), "3/3 replicas running");
    assert.equal(statusMessage({ status: "UNHEALTHY", failures: 1, lastError: "e", retryInS: 1 }, counts, []), "1 failed start(s) of this version: e; next attempt in 1 s");
    assert.equal(statusMessage({ status: "DELETING", draining: 2 }, counts, []), "draining 2 replica(s)");
  });

  it("builds the status record with its counts, and a deleted deployment's", () => {
    const draft = { name: "app", health: { status: "UPDATING" as const }, counts, codeVersion: "v2", generation: 3, backoff: { failures: 0, retryAt: 0 }, now: NOW };
    const s = statusRecord(draft, [{ kind: "no-hosts" }]);
    assert.deepEqual(
      { ...s },
      { name: "app", status: "UPDATING", message: "2/3 replicas running the current version; 1 pending: no live hosts", targetReplicas: 3, runningReplicas: 3, updatedReplicas: 2, codeVersion: "v2", generation: 3, failures: 0, retryAt: 0, updatedAt: NOW, pendingReasons: ["no live hosts"] },
    );
    const gone = statusRecord(deletingDraft("app", "v2", 2, 1, NOW), []);
    assert.deepEqual([gone.status, gone.message, gone.targetReplicas, gone.runningReplicas, gone.generation], ["DELETING", "draining 2 replica(s)", 0, 1, 0]);
  });
});
