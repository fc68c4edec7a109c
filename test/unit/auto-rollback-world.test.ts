/**
 * Automatic rollback in a small simulated world: the real reconcile, its
 * decisions written the way the leader writes them (revision writes first,
 * each only if its guard holds, then the rest), onto an in-memory copy of the
 * Redis hashes; clients append revisions the way applyDeployments does; a fake
 * host moves replicas along (some versions fail to start, some never finish
 * starting). No client watches a rollout: every outcome here is the
 * controller's. Assertions are about what a user sees: status, history,
 * which replicas serve.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Revision, RevisionBody } from "../../src/client/revision-policy.js";
import { parseRevisions } from "../../src/client/revisions.js";
import { decisionOps, revisionWriteOps } from "../../src/controller/decision-ops.js";
import { revisionsToRead } from "../../src/controller/reconcile-revisions.js";
import { reconcile, type Decisions } from "../../src/controller/reconcile.js";
import { Keys } from "../../src/shared/keys.js";
import type { DeploymentRecord, DeploymentStatusRecord, HostInfo, ReplicaAssignment, ReplicaStatus } from "../../src/shared/records.js";
import { parseDeploymentSpec, type DeploymentSpecInput } from "../../src/spec/deployment-spec.js";
import { mulberry32 } from "../helpers/prng.js";

const APP = "app";
const keys = new Keys("sim");

class World {
  now = 1_700_000_000_000;
  /** Every hash the controller and clients write, as Redis holds them: key → field → JSON. */
  readonly hashes = new Map<string, Map<string, string>>();
  /** Code versions whose replicas fail to start, with their error; and those that never finish starting. */
  readonly failing = new Map<string, string>();
  readonly hanging = new Set<string>();
  /** Called between the controller's decision and its writes (another client acting meanwhile). */
  meanwhile: ((d: Decisions) => void) | undefined;
  /** Rollbacks the controller wrote, with the revision they undid. */
  readonly rollbacks: Array<{ failed: Revision; record: DeploymentRecord }> = [];
  private seq = 0;

  constructor() {
    const host: HostInfo & { alive: boolean } = { id: "h1", hostname: "h1", pid: 1, resources: { CPU: 64 }, gpuDevices: 0, startedAt: this.now, lastHeartbeatAt: this.now, draining: false, emptySince: null, alive: true };
    this.hash(keys.hosts).set("h1", JSON.stringify(host));
  }

  hash(key: string): Map<string, string> {
    let h = this.hashes.get(key);
    if (!h) this.hashes.set(key, (h = new Map()));
    return h;
  }

  private parsed<T>(key: string): Map<string, T> {
    return new Map([...this.hash(key)].map(([k, v]) => [k, JSON.parse(v) as T]));
  }

  /** A client's deploy: the record and its revision in one transaction, as applyDeployments and its APPEND script do. */
  deploy(input: Partial<DeploymentSpecInput>, codeVersion: string): number {
    const spec = parseDeploymentSpec({ name: APP, import: "app.ts", numReplicas: 2, version: codeVersion, ...input });
    const generation = (this.record()?.generation ?? 0) + 1;
    const record: DeploymentRecord = { spec, codeVersion, configVersion: "cfg", generation, deployedAt: this.now };
    this.hash(keys.deployments).set(APP, JSON.stringify(record));
    const revisions = this.hash(keys.revisions(APP));
    const n = Number(revisions.get("next") ?? 0) + 1;
    revisions.set("next", String(n));
    const prev = revisions.get(`o:${n - 1}`);
    if (prev && JSON.parse(prev).outcome === "rolling out") revisions.set(`o:${n - 1}`, JSON.stringify({ outcome: "superseded", at: this.now }));
    const body: RevisionBody = { appliedAt: this.now, source: { host: "laptop", user: "ann" }, version: codeVersion, codeVersion, configVersion: "cfg", generation, spec };
    revisions.set(`r:${n}`, JSON.stringify(body));
    revisions.set(`o:${n}`, JSON.stringify({ outcome: "rolling out", at: this.now }));
    return n;
  }

  record(): DeploymentRecord | undefined {
    return this.parsed<DeploymentRecord>(keys.deployments).get(APP);
  }

  status(): DeploymentStatusRecord | undefined {
    return this.parsed<DeploymentStatusRecord>(keys.deploymentStatus).get(APP);
  }

  history(): Revision[] {
    return parseRevisions(Object.fromEntries(this.hash(keys.revisions(APP))));
  }

  assignments(): ReplicaAssignment[] {
    return [...this.parsed<ReplicaAssignment>(keys.replicas).values()];
  }

  /** Replicas meant to run that report running. */
  serving(): ReplicaAssignment[] {
    const statuses = this.parsed<ReplicaStatus>(keys.replicaStatus);
    return this.assignments().filter((a) => a.desired === "run" && statuses.get(a.id)?.state === "running");
  }

  /** Applies ops as the fenced script does: all of them, or none when a guard does not hold. */
  private write(ops: ReadonlyArray<readonly string[]>, guards: ReadonlyArray<readonly [string, string, string]> = []): boolean {
    if (guards.some(([key, field, value]) => this.hash(key).get(field) !== value)) return false;
    for (const [command, key, ...args] of ops) {
      const h = this.hash(key as string);
      if (command === "HSET") for (let i = 0; i < args.length; i += 2) h.set(args[i]!, args[i + 1]!);
      else if (command === "HDEL") for (const field of args) h.delete(field);
      // A counter (the deployments' version), kept as the one field of its own map.
      else if (command === "INCR") h.set("", String(Number(h.get("") ?? 0) + 1));
      else assert.fail(`unexpected command ${command}`);
    }
    return true;
  }

  /** One leader tick: read, decide, write (revisions first; after a rollback, nothing else that tick). */
  controllerTick(): Decisions {
    const deployments = this.parsed<DeploymentRecord>(keys.deployments);
    const rollouts = this.parsed<NonNullable<ReturnType<typeof JSON.parse>>>(keys.rollouts);
    const views = new Map(revisionsToRead(deployments, rollouts).map((name) => [name, Object.fromEntries(this.hash(keys.revisions(name)))]));
    const d = reconcile(
      {
        now: this.now,
        deployments,
        memory: this.parsed(keys.controllerRecords),
        hosts: [...this.parsed<HostInfo & { alive: boolean }>(keys.hosts).values()],
        assignments: this.parsed(keys.replicas),
        replicaStatus: this.parsed(keys.replicaStatus),
        queues: new Map(),
        autoscaler: new Map(),
        rollouts,
        revisions: { views, source: { host: "ctl", user: "controller:c1" } },
      },
      (deployment) => `${deployment}-r${++this.seq}`,
    );
    this.meanwhile?.(d);
    let rolledBack = false;
    for (const w of d.revisionWrites) {
      const { guards, ops } = revisionWriteOps(w, keys);
      const failed = w.kind === "rollback" ? this.history().find((r) => r.revision === w.failed.revision) : undefined;
      if (this.write(ops, guards) && w.kind === "rollback") {
        rolledBack = true;
        this.rollbacks.push({ failed: failed as Revision, record: w.record });
      }
    }
    if (!rolledBack) this.write(decisionOps(d, keys));
    return d;
  }

  /** The host moves each replica one lifecycle step. */
  hostActs(): void {
    const statuses = this.hash(keys.replicaStatus);
    for (const a of this.assignments()) {
      if (a.host === null) continue;
      const st = statuses.get(a.id) ? (JSON.parse(statuses.get(a.id)!) as ReplicaStatus) : undefined;
      const report = (state: ReplicaStatus["state"], error?: string): void => {
        const s: ReplicaStatus = { id: a.id, deployment: a.deployment, host: a.host as string, state, codeVersion: a.codeVersion, configVersion: "cfg", pid: 1, workerId: `w-${a.id}`, inflight: 0, startedAt: st?.startedAt ?? this.now, updatedAt: this.now, ...(error ? { error } : {}) };
        statuses.set(a.id, JSON.stringify(s));
      };
      if (a.desired === "drain") {
        if (st?.state === "draining") report("stopped");
        else if (st !== undefined && st.state !== "stopped" && st.state !== "failed") report("draining");
      } else if (st === undefined) report("starting");
      else if (st.state === "starting" && !this.hanging.has(a.codeVersion)) {
        const error = this.failing.get(a.codeVersion);
        report(error === undefined ? "running" : "failed", error);
      }
    }
  }

  /** Replicas of a version that run now crash (and their version can no longer start, if `failing` says so). */
  crash(codeVersion: string, error: string): void {
    const statuses = this.hash(keys.replicaStatus);
    for (const [id, raw] of statuses) {
      const st = JSON.parse(raw) as ReplicaStatus;
      if (st.codeVersion === codeVersion && st.state === "running") statuses.set(id, JSON.stringify({ ...st, state: "failed", error }));
    }
  }

  tick(ms = 1000): void {
    this.controllerTick();
    this.hostActs();
    this.now += ms;
  }

  runUntil(what: string, done: () => boolean, maxTicks = 300): number {
    for (let i = 1; i <= maxTicks; i++) {
      this.tick();
      if (done()) return i;
    }
    assert.fail(`${what}: not reached within ${maxTicks} ticks; status: ${JSON.stringify(this.status())}; history: ${JSON.stringify(this.history().map((r) => [r.revision, r.version, r.outcome]))}`);
  }

  healthyAt(generation: number): boolean {
    const s = this.status();
    return s?.status === "HEALTHY" && s.generation === generation;
  }

  outcomes(): Array<[number, string, string, number | null]> {
    return this.history().map((r) => [r.revision, r.version, r.outcome, r.rollbackOf ?? null]);
  }
}

describe("automatic rollback, simulated", () => {
  it("returns a broken version to the last revision that rolled out, with the old replicas serving throughout, and no one watching", () => {
    const w = new World();
    w.deploy({ rollbackOnFailure: true }, "v1");
    w.runUntil("v1 HEALTHY and settled", () => w.healthyAt(1) && w.history()[0]?.outcome === "rolled out");
    const v1 = w.serving().map((a) => a.id).sort();
    w.failing.set("v2", "model weights not found");
    w.deploy({ rollbackOnFailure: true }, "v2");
    let minServing = Infinity;
    const ticks = w.runUntil("rolled back", () => {
      minServing = Math.min(minServing, w.serving().length);
      return w.healthyAt(3);
    });
    assert.ok(ticks < 30, `rolled back within ${ticks} ticks`);
    assert.equal(minServing, 2, "the old version kept serving in full");
    assert.deepEqual(w.serving().map((a) => a.id).sort(), v1, "the very same replicas: none restarted");
    assert.equal(w.assignments().length, 2, "nothing of v2 left");
    const record = w.record()!;
    assert.deepEqual([record.codeVersion, record.generation, record.rolledBack?.failedRevision, record.rolledBack?.to], ["v1", 3, 2, 1]);
    assert.equal(w.status()?.message, "rolled back to revision 1: revision 2 failed: 3 failed start(s) of its replicas: model weights not found; 2/2 replicas running");
    w.runUntil("revision 3 settled", () => w.history()[2]?.outcome === "rolled out");
    assert.deepEqual(w.outcomes(), [
      [1, "v1", "rolled out", null],
      [2, "v2", "failed", null],
      [3, "v1", "rolled out", 1],
    ]);
    assert.equal(w.history()[1]?.error, "3 failed start(s) of its replicas: model weights not found");
    assert.deepEqual(w.history()[2]?.source, { host: "ctl", user: "controller:c1" });
    for (let i = 0; i < 50; i++) w.tick();
    assert.equal(w.record()?.generation, 3, "it stays where it was returned to");
    assert.equal(w.rollbacks.length, 1);
  });

  it("without rollbackOnFailure, stays UNHEALTHY on the broken version with the old one serving, as before", () => {
    const w = new World();
    w.deploy({}, "v1");
    w.runUntil("v1 HEALTHY", () => w.healthyAt(1));
    w.failing.set("v2", "boom");
    w.deploy({}, "v2");
    for (let i = 0; i < 200; i++) w.tick();
    assert.equal(w.status()?.status, "UNHEALTHY");
    assert.equal(w.record()?.generation, 2);
    assert.equal(w.serving().length, 2);
    assert.deepEqual(w.outcomes(), [
      [1, "v1", "rolled out", null],
      [2, "v2", "failed", null],
    ]);
    assert.equal(w.history()[1]?.error, "boom");
    assert.equal(w.rollbacks.length, 0);
  });

  it("rolls back a rollout that has not finished within rolloutTimeoutS", () => {
    const w = new World();
    w.deploy({ rollbackOnFailure: true, rolloutTimeoutS: 20 }, "v1");
    w.runUntil("v1 settled", () => w.history()[0]?.outcome === "rolled out");
    w.hanging.add("v2");
    const deployedAt = w.now;
    w.deploy({ rollbackOnFailure: true, rolloutTimeoutS: 20 }, "v2");
    w.runUntil("rolled back", () => w.healthyAt(3));
    assert.ok(w.now - deployedAt >= 20_000 && w.now - deployedAt < 25_000, `after ${w.now - deployedAt} ms`);
    assert.equal(w.history()[1]?.error, "not rolled out within 20 s (0/2 replicas running it)");
    assert.match(w.status()?.message ?? "", /^rolled back to revision 1: revision 2 failed: not rolled out within 20 s/);
  });

  it("does not roll back a rollback that fails: it stays UNHEALTHY and says why", () => {
    const w = new World();
    for (const v of ["v1", "v2"]) {
      const n = w.deploy({ rollbackOnFailure: true }, v);
      w.runUntil(`${v} settled`, () => w.history().at(-1)?.outcome === "rolled out" && w.history().at(-1)?.revision === n);
    }
    // v2's disk goes: its replicas crash and cannot start again; then a broken v3 is deployed.
    w.failing.set("v2", "disk gone");
    w.crash("v2", "disk gone");
    w.failing.set("v3", "boom");
    w.deploy({ rollbackOnFailure: true }, "v3");
    w.runUntil("revision 4 failed too", () => w.history()[3]?.outcome === "failed" && w.status()?.rolloutFailed !== undefined);
    for (let i = 0; i < 100; i++) w.tick();
    assert.equal(w.rollbacks.length, 1, "one rollback, not a chain");
    assert.deepEqual(w.outcomes(), [
      [1, "v1", "rolled out", null],
      [2, "v2", "rolled out", null],
      [3, "v3", "failed", null],
      [4, "v2", "failed", 2],
    ]);
    assert.equal(w.status()?.status, "UNHEALTHY");
    assert.match(w.status()?.message ?? "", /^rolled back to revision 2: revision 3 failed: .*boom; .*disk gone.*; rollout failed, not rolled back: revision 4 is itself a rollback \(of revision 2\)$/);
  });

  it("leaves a deploy that came between its read and its write alone", () => {
    const w = new World();
    w.deploy({ rollbackOnFailure: true }, "v1");
    w.runUntil("v1 settled", () => w.history()[0]?.outcome === "rolled out");
    w.failing.set("v2", "boom");
    w.deploy({ rollbackOnFailure: true }, "v2");
    w.meanwhile = (d) => {
      if (d.revisionWrites.some((x) => x.kind === "rollback")) {
        w.deploy({ rollbackOnFailure: true }, "v3");
        w.meanwhile = undefined;
      }
    };
    w.runUntil("v3 HEALTHY", () => w.healthyAt(3));
    assert.equal(w.rollbacks.length, 0);
    assert.equal(w.record()?.codeVersion, "v3");
    assert.equal(w.record()?.rolledBack, undefined);
    w.runUntil("v3 settled", () => w.history()[2]?.outcome === "rolled out");
    assert.deepEqual(w.outcomes().map((o) => o[2]), ["rolled out", "failed", "rolled out"]);
  });

  it("keeps its promises over thousands of seeded random steps", () => {
    let totalRollbacks = 0;
    for (let seed = 1; seed <= 12; seed++) {
      const rand = mulberry32(seed);
      const w = new World();
      let version = 0;
      let everServed = false;
      for (let step = 0; step < 400; step++) {
        if (rand() < 0.06) {
          const v = `v${++version}`;
          const kind = rand();
          if (kind < 0.3) w.failing.set(v, `broken ${v}`);
          else if (kind < 0.4) w.hanging.add(v);
          w.deploy({ rollbackOnFailure: rand() < 0.8, rolloutTimeoutS: 5 + Math.floor(rand() * 30), rolloutFailureThreshold: 1 + Math.floor(rand() * 4) }, v);
        }
        w.tick(250 + Math.floor(rand() * 1500));
        const history = w.history();
        const serving = w.serving().length;
        everServed ||= serving > 0;
        assert.ok(history.filter((r) => r.outcome === "rolling out").every((r) => r === history.at(-1)), `seed ${seed} step ${step}: only the latest revision rolls out`);
        for (const r of history.filter((x) => x.rollbackOf !== undefined)) {
          assert.ok(history.find((x) => x.revision === r.rollbackOf)?.rolledOutAt !== undefined || r.rollbackOf! < history[0]!.revision, `seed ${seed}: revision ${r.revision} returned to one that rolled out`);
        }
        const note = w.record()?.rolledBack;
        if (note) assert.equal(history.find((r) => r.revision === note.failedRevision)?.outcome ?? "failed", "failed", `seed ${seed} step ${step}: the undone revision is failed`);
      }
      totalRollbacks += w.rollbacks.length;
      for (const { failed } of w.rollbacks) assert.equal(failed.rollbackOf, undefined, `seed ${seed}: never a rollback of a rollback`);
      // A good version at the end: it rolls out, and the controller alone settles it.
      const n = w.deploy({ rollbackOnFailure: true }, `v${++version}`);
      w.runUntil(`seed ${seed}: the last version rolled out`, () => w.history().at(-1)?.revision === n && w.history().at(-1)?.outcome === "rolled out");
      assert.ok(everServed, `seed ${seed} served at some point`);
    }
    assert.ok(totalRollbacks >= 12, `the runs rolled back (${totalRollbacks} times)`);
  });
});
