/**
 * reconcile() is one controller tick as a pure function. These tests run it
 * in a small simulated world: the decisions are applied to an in-memory copy
 * of the Redis state, and fake hosts move assigned replicas through
 * starting → running (or failed), and draining → stopped, one step per tick.
 * The assertions are about what a user would see: replicas, hosts, statuses.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { restoreAutoscalerState, type AutoscalerState } from "../../src/autoscaler/policy.js";
import { decisionOps } from "../../src/controller/decision-ops.js";
import { backoffMs, reconcile, type Decisions, type ObservedState } from "../../src/controller/reconcile.js";
import { minServing } from "../../src/controller/rollout-planner.js";
import { Keys } from "../../src/shared/keys.js";
import type { QueueDepth } from "../../src/queue/queue-depths.js";
import type { ControllerRecord, DeploymentRecord, DeploymentStatusRecord, HostInfo, ReplicaAssignment, ReplicaStatus, RolloutRecord } from "../../src/shared/records.js";
import { describePending } from "../../src/shared/resources.js";
import { parseDeploymentSpec, type DeploymentSpecInput } from "../../src/spec/deployment-spec.js";

type Host = HostInfo & { alive: boolean };

/** The cluster's state as Redis would hold it, plus fake hosts that act on their assignments. */
class World {
  now = 1_700_000_000_000;
  readonly deployments = new Map<string, DeploymentRecord>();
  readonly statuses = new Map<string, DeploymentStatusRecord>();
  readonly hosts = new Map<string, Host>();
  readonly assignments = new Map<string, ReplicaAssignment>();
  readonly replicaStatus = new Map<string, ReplicaStatus>();
  readonly queues = new Map<string, QueueDepth>();
  readonly autoscaler = new Map<string, AutoscalerState>();
  /** The controller's own memory (ControllerRecord per deployment). */
  readonly memory = new Map<string, ControllerRecord>();
  /** The controller's record of each deployment's latest rollout. */
  readonly rollouts = new Map<string, RolloutRecord>();
  /** Code versions whose replicas fail to start, with the error they report. */
  readonly failing = new Map<string, string>();
  private seq = 0;
  readonly newId = (deployment: string): string => `${deployment}-r${++this.seq}`;

  addHost(id: string, cpus: number, extra: Partial<Host> = {}): Host {
    const host: Host = {
      id,
      hostname: `${id}.local`,
      pid: 100 + this.hosts.size,
      resources: { CPU: cpus },
      gpuDevices: 0,
      startedAt: this.now,
      lastHeartbeatAt: this.now,
      draining: false,
      emptySince: this.now,
      alive: true,
      ...extra,
    };
    this.hosts.set(id, host);
    return host;
  }

  setHost(id: string, change: Partial<Host>): void {
    const host = this.hosts.get(id);
    assert.ok(host, `host ${id}`);
    this.hosts.set(id, { ...host, ...change });
  }

  deploy(input: DeploymentSpecInput, codeVersion: string): DeploymentRecord {
    const spec = parseDeploymentSpec(input);
    const before = this.deployments.get(spec.name);
    const record: DeploymentRecord = { spec, codeVersion, configVersion: "cfg", generation: (before?.generation ?? 0) + 1, deployedAt: this.now };
    this.deployments.set(spec.name, record);
    return record;
  }

  /** A snapshot, as readClusterState would return it: later changes to the world do not leak in. */
  observed(): ObservedState {
    return structuredClone({
      now: this.now,
      deployments: this.deployments,
      memory: this.memory,
      hosts: [...this.hosts.values()],
      assignments: this.assignments,
      replicaStatus: this.replicaStatus,
      queues: this.queues,
      autoscaler: this.autoscaler,
      rollouts: this.rollouts,
    });
  }

  /** Writes decisions the way the controller does: its Redis ops, applied to the hashes this world holds. */
  apply(d: Decisions): void {
    const keys = new Keys("sim");
    const hashes = new Map<string, { map: Map<string, unknown>; parse: (json: string) => unknown }>([
      [keys.replicas, { map: this.assignments, parse: JSON.parse }],
      [keys.replicaStatus, { map: this.replicaStatus, parse: JSON.parse }],
      [keys.deploymentStatus, { map: this.statuses, parse: JSON.parse }],
      [keys.controllerRecords, { map: this.memory, parse: JSON.parse }],
      [keys.autoscaler, { map: this.autoscaler, parse: (json) => restoreAutoscalerState(JSON.parse(json)) }],
      [keys.hosts, { map: this.hosts, parse: JSON.parse }],
      [keys.rollouts, { map: this.rollouts, parse: JSON.parse }],
    ]);
    for (const [command, key, ...args] of decisionOps(d, keys)) {
      const hash = hashes.get(key);
      assert.ok(hash, `the controller writes only hashes this world holds, not ${key}`);
      if (command === "HSET") for (let i = 0; i < args.length; i += 2) hash.map.set(args[i]!, hash.parse(args[i + 1]!));
      else if (command === "HDEL") for (const field of args) hash.map.delete(field);
      else assert.fail(`unexpected command ${command}`);
    }
  }

  /** Every live host advances each of its replicas by one lifecycle step. */
  hostsAct(): void {
    for (const a of this.assignments.values()) {
      if (a.host === null || !this.hosts.get(a.host)?.alive) continue;
      const st = this.replicaStatus.get(a.id);
      const report = (state: ReplicaStatus["state"], extra: Partial<ReplicaStatus> = {}): void => {
        this.replicaStatus.set(a.id, {
          id: a.id,
          deployment: a.deployment,
          host: a.host as string,
          state,
          codeVersion: a.codeVersion,
          configVersion: "cfg",
          pid: 1000,
          workerId: st?.workerId ?? null,
          inflight: 0,
          startedAt: st?.startedAt ?? this.now,
          updatedAt: this.now,
          ...extra,
        });
      };
      if (a.desired === "drain") {
        // As a real host: a drained replica it never started gets no status from it.
        if (st?.state === "draining") report("stopped");
        else if (st !== undefined && st.state !== "stopped" && st.state !== "failed") report("draining");
      } else if (st === undefined) report("starting");
      else if (st.state === "starting") {
        const error = this.failing.get(a.codeVersion);
        if (error === undefined) report("running", { workerId: `worker-${a.id}` });
        else report("failed", { error });
      }
    }
  }

  /** reconcile on the current state, without applying anything. */
  decide(newId: (deployment: string) => string = this.newId): Decisions {
    return reconcile(this.observed(), newId);
  }

  /** One controller tick, then the hosts act, then time passes. */
  tick(ms = 1000): Decisions {
    const d = this.decide();
    this.apply(d);
    this.hostsAct();
    this.now += ms;
    return d;
  }

  /** Ticks until `done` holds (checked after each tick); returns the ticks taken. */
  runUntil(done: () => boolean, maxTicks = 100, ms = 1000): number {
    for (let i = 1; i <= maxTicks; i++) {
      this.tick(ms);
      if (done()) return i;
    }
    assert.fail(`not reached within ${maxTicks} ticks; status: ${JSON.stringify([...this.statuses.values()].map((s) => [s.name, s.status, s.message]))}`);
  }

  status(name: string): DeploymentStatusRecord | undefined {
    return this.statuses.get(name);
  }

  healthy(name: string): boolean {
    return this.statuses.get(name)?.status === "HEALTHY";
  }

  replicasOf(name: string): ReplicaAssignment[] {
    return [...this.assignments.values()].filter((a) => a.deployment === name);
  }

  /** Replicas of a deployment that run and are meant to (desired run, reported running). */
  serving(name: string, codeVersion?: string): ReplicaAssignment[] {
    return this.replicasOf(name).filter(
      (a) => a.desired === "run" && this.replicaStatus.get(a.id)?.state === "running" && (codeVersion === undefined || a.codeVersion === codeVersion),
    );
  }
}

const APP = "app";

/** Why a replica waits, as people read it ("" when it does not). */
function pendingText(a: ReplicaAssignment): string {
  return a.pendingReason ? describePending(a.pendingReason) : "";
}

/** Two 4-CPU hosts and one dead one. */
function smallCluster(): World {
  const w = new World();
  w.addHost("host-a", 4);
  w.addHost("host-b", 4);
  w.addHost("host-dead", 64, { alive: false });
  return w;
}

describe("reconcile: a new deployment", () => {
  it("gets its replicas placed on live hosts and becomes HEALTHY", () => {
    const w = smallCluster();
    w.deploy({ name: APP, import: "app.ts", numReplicas: 3 }, "v1");
    const first = w.tick();
    assert.equal(first.upsert.length, 3);
    for (const a of first.upsert) {
      assert.ok(a.host === "host-a" || a.host === "host-b", `placed on a live host, got ${a.host}`);
      assert.equal(a.desired, "run");
      assert.equal(a.codeVersion, "v1");
      assert.deepEqual(a.resources, { CPU: 1, GPU: 0 });
    }
    assert.equal(new Set(first.upsert.map((a) => a.id)).size, 3, "distinct ids");
    assert.deepEqual(new Set(first.upsert.map((a) => a.host)), new Set(["host-a", "host-b"]), "spread over both hosts");
    assert.equal(w.status(APP)?.status, "UPDATING");

    w.runUntil(() => w.healthy(APP));
    const status = w.status(APP);
    assert.equal(status?.targetReplicas, 3);
    assert.equal(status?.generation, 1);
    assert.equal(status?.codeVersion, "v1");
    assert.equal(status?.failures, 0);
    assert.match(status?.message ?? "", /3\/3 replicas running/);
    assert.equal(w.serving(APP).length, 3);
    assert.equal(w.replicasOf(APP).length, 3);
  });
});

describe("reconcile: idempotence (a restarted controller reads the same state)", () => {
  it("decides the same starts twice on the same state", () => {
    const w = smallCluster();
    w.deploy({ name: APP, import: "app.ts", numReplicas: 3 }, "v1");
    let n = 0;
    const ids = (): string => `fixed-${++n}`;
    const a = w.decide(ids);
    n = 0;
    const b = w.decide(ids);
    assert.equal(a.upsert.length, 3);
    assert.deepEqual(b.upsert, a.upsert, "same replicas on the same hosts");
    assert.deepEqual(b.statuses, a.statuses);
  });

  it("does not duplicate replicas that are assigned but not yet reported by their host", () => {
    const w = smallCluster();
    w.deploy({ name: APP, import: "app.ts", numReplicas: 3 }, "v1");
    w.apply(w.decide()); // written, but no host has acted yet
    const fresh = w.decide((d) => `${d}-new-controller`);
    assert.equal(fresh.upsert.filter((a) => !w.assignments.has(a.id)).length, 0, "no new replicas");
    assert.deepEqual(fresh.remove, []);
    w.hostsAct(); // now starting
    const again = w.decide((d) => `${d}-new-controller`);
    assert.equal(again.upsert.length, 0);
    assert.deepEqual(again.remove, []);
  });

  it("changes nothing on a converged state, however often it runs", () => {
    const w = smallCluster();
    w.deploy({ name: APP, import: "app.ts", numReplicas: 3 }, "v1");
    w.deploy({ name: "other", import: "o.ts", numReplicas: 2, actorOptions: { numCpus: 0.5 } }, "o1");
    w.runUntil(() => w.healthy(APP) && w.healthy("other"));
    const before = structuredClone([...w.assignments.values()]);
    for (let i = 0; i < 20; i++) {
      const d = w.tick();
      assert.deepEqual(d.upsert, [], `tick ${i}: no upserts`);
      assert.deepEqual(d.remove, [], `tick ${i}: no removals`);
      assert.deepEqual(d.releaseLocks, []);
      assert.deepEqual(d.forget, []);
      assert.deepEqual(d.statuses.map((s) => [s.name, s.status]).sort(), [[APP, "HEALTHY"], ["other", "HEALTHY"]]);
    }
    assert.deepEqual([...w.assignments.values()], before);
  });
  it("removes a drained replica that its host never started (its version was replaced before the host saw it)", () => {
    const w = smallCluster();
    w.deploy({ name: APP, import: "app.ts", numReplicas: 2 }, "v1");
    w.runUntil(() => w.healthy(APP));
    // Assigned at v0, which no host would start once v1 was the deployment's version; then drained.
    const ghost: ReplicaAssignment = { ...w.replicasOf(APP)[0]!, id: `${APP}-ghost`, codeVersion: "v0", version: "v0", desired: "drain" };
    w.assignments.set(ghost.id, ghost);
    const d = w.tick();
    assert.deepEqual(d.remove, [ghost.id]);
    assert.ok(!w.assignments.has(ghost.id));
    assert.equal(w.status(APP)?.status, "HEALTHY");
  });
});

describe("reconcile: a host dies", () => {
  it("removes its replicas, releases their job locks and replaces them on a live host", () => {
    const w = smallCluster();
    w.deploy({ name: APP, import: "app.ts", numReplicas: 3 }, "v1");
    w.runUntil(() => w.healthy(APP));
    const onA = w.replicasOf(APP).filter((a) => a.host === "host-a");
    assert.ok(onA.length >= 1, "host-a runs some replicas");
    // One of them has no worker yet (its process was still starting): nothing to release for it.
    const starting = onA[0]!;
    w.replicaStatus.set(starting.id, { ...w.replicaStatus.get(starting.id)!, state: "starting", workerId: null });
    w.setHost("host-a", { alive: false });

    const d = w.tick();
    assert.deepEqual([...d.remove].sort(), onA.map((a) => a.id).sort(), "every replica of the dead host is removed");
    assert.deepEqual(
      d.releaseLocks.map((l) => l.workerId).sort(),
      onA.slice(1).map((a) => `worker-${a.id}`).sort(),
      "locks of the replicas that had a worker are released",
    );
    for (const l of d.releaseLocks) assert.equal(l.deployment, APP);
    const successors = d.upsert.filter((a) => !onA.some((o) => o.id === a.id));
    assert.equal(successors.length, onA.length, "one successor per lost replica");
    for (const a of successors) assert.equal(a.host, "host-b");
    assert.ok(d.events.some((e) => e.level === "warn" && e.message.includes("host-a")), "the loss is logged");

    w.runUntil(() => w.healthy(APP));
    assert.equal(w.serving(APP).length, 3);
    assert.ok(w.replicasOf(APP).every((a) => a.host === "host-b"));
  });
});

/** A deployment of 2 at v1, then v2 whose replicas fail to start with `error`. */
function failingRollout(error: string): World {
  const w = new World();
  w.addHost("host-a", 8);
  w.addHost("host-b", 8);
  w.deploy({ name: APP, import: "app.ts", numReplicas: 2 }, "v1");
  w.runUntil(() => w.healthy(APP));
  w.failing.set("v2", error);
  w.deploy({ name: APP, import: "app.ts", numReplicas: 2 }, "v2");
  return w;
}

describe("reconcile: failing replicas", () => {
  const ERROR = "Error: constructor threw: model file missing";

  it("backs off 1 s, 2 s, 4 s… up to 60 s, UNHEALTHY with the error, while the old version keeps serving", () => {
    const w = failingRollout(ERROR);
    const delays: number[] = [];
    let failures = 0;
    let retryAt = 0;
    for (let i = 0; i < 2000 && delays.length < 9; i++) {
      const d = w.tick(250);
      const status = w.status(APP);
      assert.ok(status);
      const startedV2 = d.upsert.filter((a) => a.codeVersion === "v2" && a.desired === "run" && a.createdAt === status.updatedAt && !d.remove.includes(a.id));
      if (startedV2.length > 0) assert.ok(status.updatedAt >= retryAt, `no v2 replica is started before retryAt (tick ${i})`);
      if (status.failures > failures) {
        delays.push(status.retryAt - status.updatedAt);
        retryAt = status.retryAt;
        assert.equal(status.status, "UNHEALTHY");
        assert.equal(status.lastError, ERROR);
        assert.ok(status.message.includes(ERROR), `the message carries the error: ${status.message}`);
      }
      if (status.failures > 0) assert.equal(status.status, "UNHEALTHY", `stays UNHEALTHY while failing (tick ${i})`);
      failures = status.failures;
      const oldServing = w.serving(APP, "v1").length;
      assert.ok(oldServing >= minServing(2), `the old version keeps serving (tick ${i}: ${oldServing} serving)`);
    }
    assert.deepEqual(delays, [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]);
    assert.deepEqual(delays, [1, 2, 3, 4, 5, 6, 7, 8, 9].map(backoffMs));
    assert.equal(w.status(APP)?.codeVersion, "v2");
  });

  it("recovers to HEALTHY when a good version is deployed", () => {
    const w = failingRollout(ERROR);
    w.runUntil(() => (w.status(APP)?.failures ?? 0) >= 6, 400);
    w.deploy({ name: APP, import: "app.ts", numReplicas: 2 }, "v3");
    w.runUntil(() => w.healthy(APP), 200);
    const status = w.status(APP);
    assert.equal(status?.codeVersion, "v3");
    assert.equal(status?.failures, 0);
    assert.equal(status?.lastError, undefined);
    assert.equal(w.serving(APP, "v3").length, 2);
    w.runUntil(() => w.replicasOf(APP).length === 2, 10);
    assert.ok(w.replicasOf(APP).every((a) => a.codeVersion === "v3"), "the old and failed replicas are gone");
  });

  it("starts the fixed version at once, not after the broken version's back-off", () => {
    const w = failingRollout(ERROR);
    w.runUntil(() => (w.status(APP)?.failures ?? 0) >= 7, 800); // back-off now 60 s
    assert.ok((w.status(APP)?.retryAt ?? 0) - w.now > 30_000, "deep in a long back-off");
    w.deploy({ name: APP, import: "app.ts", numReplicas: 2 }, "v3");
    const d = w.tick();
    assert.ok(
      d.upsert.some((a) => a.codeVersion === "v3"),
      `a v3 replica is started on the first tick after the deploy (status: ${w.status(APP)?.message}, retryAt in ${((w.status(APP)?.retryAt ?? 0) - w.now) / 1000} s)`,
    );
    w.runUntil(() => w.healthy(APP), 10);
  });

  it("does not count failures of an old version against the new one", () => {
    const w = new World();
    w.addHost("host-a", 8);
    w.deploy({ name: APP, import: "app.ts", numReplicas: 1 }, "v1");
    w.runUntil(() => w.healthy(APP));
    w.deploy({ name: APP, import: "app.ts", numReplicas: 1 }, "v2");
    w.tick(); // v2 successor placed
    const old = w.serving(APP, "v1")[0]!;
    w.replicaStatus.set(old.id, { ...w.replicaStatus.get(old.id)!, state: "failed", error: "old crash" });
    w.tick();
    assert.equal(w.status(APP)?.failures, 0);
    assert.notEqual(w.status(APP)?.status, "UNHEALTHY");
    w.runUntil(() => w.healthy(APP));
  });
});

describe("reconcile: a deleted deployment", () => {
  it("drains every replica, shows DELETING, and is forgotten once none is left", () => {
    const w = smallCluster();
    w.deploy({ name: APP, import: "app.ts", numReplicas: 3 }, "v1");
    w.runUntil(() => w.healthy(APP));
    const ids = w.replicasOf(APP).map((a) => a.id).sort();
    w.deployments.delete(APP);

    const d = w.tick();
    assert.deepEqual(d.upsert.map((a) => a.id).sort(), ids);
    assert.ok(d.upsert.every((a) => a.desired === "drain"));
    assert.equal(w.status(APP)?.status, "DELETING");
    assert.match(w.status(APP)?.message ?? "", /draining 3 replica/);
    assert.deepEqual(d.forget, []);

    let forgotten = false;
    for (let i = 0; i < 10 && !forgotten; i++) {
      const next = w.tick();
      assert.ok(next.upsert.every((a) => a.desired === "drain"), "nothing new is started for a deleted deployment");
      forgotten = next.forget.includes(APP);
      if (!forgotten) assert.equal(w.status(APP)?.status, "DELETING");
    }
    assert.ok(forgotten, "forgotten once its replicas are gone");
    assert.equal(w.replicasOf(APP).length, 0);
    assert.equal(w.status(APP), undefined);
    const after = w.tick();
    assert.deepEqual(after.statuses, []);
    assert.deepEqual(after.forget, []);
  });
});

describe("reconcile: a draining host", () => {
  it("gets successors on another host before its replica is drained", () => {
    const w = new World();
    w.addHost("host-a", 4);
    w.deploy({ name: APP, import: "app.ts", numReplicas: 1 }, "v1");
    w.runUntil(() => w.healthy(APP));
    const [original] = w.replicasOf(APP);
    assert.ok(original);
    w.addHost("host-b", 4);
    w.setHost("host-a", { draining: true });

    const d = w.tick();
    const successor = d.upsert.find((a) => a.id !== original.id);
    assert.equal(successor?.host, "host-b", "the successor goes to the other host");
    assert.equal(w.assignments.get(original.id)?.desired, "run", "the original keeps serving while its successor starts");
    for (let i = 0; i < 20 && w.assignments.get(original.id)?.desired === "run"; i++) {
      const successorBefore: ReplicaStatus["state"] | undefined = w.replicaStatus.get(successor!.id)?.state;
      const next = w.tick();
      if (next.upsert.some((a) => a.id === original.id && a.desired === "drain")) {
        assert.equal(successorBefore, "running", "drained only once the successor runs");
      }
    }
    assert.equal(w.assignments.get(original.id)?.desired, "drain", "then the original is drained");
    w.runUntil(() => w.healthy(APP) && !w.assignments.has(original.id));
    assert.deepEqual(w.replicasOf(APP).map((a) => a.host), ["host-b"]);
  });

  it("moves several replicas without dropping below the serving floor", () => {
    const w = new World();
    w.addHost("host-a", 8);
    w.deploy({ name: APP, import: "app.ts", numReplicas: 4 }, "v1");
    w.runUntil(() => w.healthy(APP));
    w.addHost("host-b", 8);
    w.setHost("host-a", { draining: true });
    for (let i = 0; i < 30 && w.replicasOf(APP).some((a) => a.host === "host-a"); i++) {
      w.tick();
      assert.ok(w.serving(APP).length >= minServing(4), `tick ${i}: ${w.serving(APP).length} serving`);
    }
    w.runUntil(() => w.healthy(APP) && w.replicasOf(APP).length === 4);
    assert.ok(w.replicasOf(APP).every((a) => a.host === "host-b"));
  });

  it("drains at once when no other host has room for a successor", () => {
    const w = new World();
    w.addHost("host-a", 4);
    w.deploy({ name: APP, import: "app.ts", numReplicas: 1, actorOptions: { numCpus: 2 } }, "v1");
    w.runUntil(() => w.healthy(APP));
    const [original] = w.replicasOf(APP);
    assert.ok(original);
    w.addHost("host-small", 1);
    w.setHost("host-a", { draining: true });

    const d = w.tick();
    assert.equal(d.upsert.find((a) => a.id === original.id)?.desired, "drain", "drained in the same tick");
    const successor = d.upsert.find((a) => a.id !== original.id);
    assert.ok(successor, "a successor is still asked for");
    assert.equal(successor.host, null);
    assert.match(pendingText(successor), /2 CPU/);
    assert.match(w.status(APP)?.message ?? "", /pending: .*2 CPU/);
  });
});

describe("reconcile: pending replicas", () => {
  it("say why they are pending, in the assignment and the status, and are placed once a host has room", () => {
    const w = smallCluster();
    w.deploy({ name: APP, import: "app.ts", numReplicas: 2, actorOptions: { numCpus: 8 } }, "v1");
    const d = w.tick();
    assert.equal(d.upsert.length, 2);
    for (const a of d.upsert) {
      assert.equal(a.host, null);
      assert.match(pendingText(a), /needs 8 CPU, no host has 8 free/);
    }
    const status = w.status(APP);
    assert.equal(status?.status, "UPDATING");
    assert.match(status?.message ?? "", /2 pending: needs 8 CPU, no host has 8 free/);
    assert.deepEqual(status?.pendingReasons, ["needs 8 CPU, no host has 8 free"]);

    const quiet = w.tick();
    assert.deepEqual(quiet.upsert, [], "an unchanged reason is not written again");
    assert.equal(w.replicasOf(APP).length, 2, "no more replicas are asked for while they wait");

    w.addHost("host-big", 16);
    const placed = w.tick();
    assert.equal(placed.upsert.length, 2);
    for (const a of placed.upsert) {
      assert.equal(a.host, "host-big");
      assert.equal(a.pendingReason, undefined);
    }
    w.runUntil(() => w.healthy(APP));
    assert.equal(w.status(APP)?.pendingReasons, undefined);
  });

  it("that a scale-down removes are not placed, even when a host has room in the same tick", () => {
    const w = smallCluster();
    w.deploy({ name: APP, import: "app.ts", numReplicas: 3, actorOptions: { numCpus: 3 } }, "v1");
    w.runUntil(() => w.serving(APP).length === 2);
    const pending = w.replicasOf(APP).filter((a) => a.host === null);
    assert.equal(pending.length, 1, "one replica waits: each host has room for one");

    w.addHost("host-c", 4);
    w.deploy({ name: APP, import: "app.ts", numReplicas: 2, actorOptions: { numCpus: 3 } }, "v1");
    const d = w.tick();
    const gone = pending[0]!.id;
    assert.ok(d.remove.includes(gone), "the pending replica is the one the scale-down removes");
    assert.deepEqual(d.upsert.filter((a) => a.id === gone), [], "and it is not placed on the new host");
    assert.equal(w.replicasOf(APP).length, 2);
    w.runUntil(() => w.healthy(APP));
  });
});

describe("reconcile: autoscaling", () => {
  const config = { minReplicas: 1, maxReplicas: 6, upscaleDelayS: 0, downscaleDelayS: 0, lookBackPeriodS: 5, targetNumOngoingRequestsPerReplica: 2 };

  it("raises the target when queue demand is high, and reports it", () => {
    const w = new World();
    w.addHost("host-a", 16);
    w.deploy({ name: APP, import: "app.ts", autoscalingConfig: config }, "v1");
    w.runUntil(() => w.healthy(APP));
    assert.equal(w.status(APP)?.targetReplicas, 1);
    const before = w.autoscaler.get(APP);
    assert.ok(before && before.samples.length > 0, "autoscaler state is kept between ticks");

    w.queues.set(APP, { waiting: 9, active: 1, failed: 0 });
    const d = w.tick();
    const state = d.autoscaler.get(APP);
    assert.ok(state, "the autoscaler state is returned for storage");
    assert.ok(state.samples.some((s) => s.sum > 0), "the demand sample is in it");
    const status = w.status(APP);
    assert.ok(status?.autoscaling);
    assert.ok(status.autoscaling.demand > 0, `demand ${status.autoscaling.demand}`);
    assert.ok(status.autoscaling.desired > 1, `desired ${status.autoscaling.desired}`);
    assert.ok(status.targetReplicas > 1, `target rose to ${status.targetReplicas}`);
    assert.equal(status.autoscaling.lastDecision?.from, 1);
    assert.equal(status.autoscaling.lastDecision?.to, status.targetReplicas);
    assert.ok((status.autoscaling.lastDecision?.reason ?? "").length > 0);
    assert.equal(d.upsert.filter((a) => a.desired === "run").length, status.targetReplicas - 1, "replicas are started for the new target");

    w.runUntil(() => w.healthy(APP) && w.serving(APP).length === w.status(APP)?.targetReplicas, 30);
    const target = w.status(APP)!.targetReplicas;
    assert.ok(target > 1 && target <= config.maxReplicas);
    assert.equal(w.replicasOf(APP).length, target);
  });

  it("keeps the raised target across a controller restart (read back from the controller record), and scales down when demand goes", () => {
    const w = new World();
    w.addHost("host-a", 16);
    w.deploy({ name: APP, import: "app.ts", autoscalingConfig: config }, "v1");
    w.runUntil(() => w.healthy(APP));
    w.queues.set(APP, { waiting: 12, active: 0, failed: 0 });
    w.runUntil(() => (w.status(APP)?.targetReplicas ?? 0) >= 6 && w.healthy(APP), 30);
    const fresh = w.decide((d) => `${d}-restarted`);
    assert.equal(fresh.statuses.find((s) => s.name === APP)?.targetReplicas, 6);
    assert.deepEqual(fresh.upsert, []);

    w.queues.set(APP, { waiting: 0, active: 0, failed: 0 });
    w.runUntil(() => w.status(APP)?.targetReplicas === 1 && w.healthy(APP) && w.replicasOf(APP).length === 1, 60);
    assert.equal(w.status(APP)?.autoscaling?.lastDecision?.to, 1);
  });

  it("counts requests, not jobs: 2 batch jobs carrying the 40 requests its requesters wait on are a demand of 40", () => {
    const w = new World();
    w.addHost("host-a", 16);
    w.deploy({ name: APP, import: "app.ts", autoscalingConfig: config }, "v1");
    w.runUntil(() => w.healthy(APP));
    w.queues.set(APP, { waiting: 2, active: 0, failed: 0, requested: 40 });
    w.runUntil(() => w.status(APP)?.targetReplicas === config.maxReplicas, 10);
    // Once the look-back window holds only the new samples, the average is what was sampled.
    for (let i = 0; i <= config.lookBackPeriodS; i++) w.tick();
    assert.equal(w.status(APP)?.autoscaling?.demand, 40);

    // Jobs added by other producers are seen only in the queue: there the queue's count stands.
    w.queues.set(APP, { waiting: 7, active: 1, failed: 0, requested: 0 });
    for (let i = 0; i <= config.lookBackPeriodS; i++) w.tick();
    assert.equal(w.status(APP)?.autoscaling?.demand, 8);
  });
});
