/**
 * planHost() for deployments with a runtimeEnv: a replica starts only from
 * its prepared package (at once when the package is ready here), a failed
 * preparation is a failed start, and a replica no longer wanted while its
 * package is prepared ends stopped. The last test drives it through a seeded
 * world where preparations take a while, fail, and the cache forgets
 * packages, and asserts what a user would see.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { planHost, type HostAction, type HostLocal, type PreparingReplica } from "../../src/host/host-plan.js";
import type { DeploymentRecord, ReplicaAssignment } from "../../src/shared/records.js";
import { parseDeploymentSpec } from "../../src/spec/deployment-spec.js";
import { mulberry32 } from "../helpers/prng.js";
import { quietVitals } from "../helpers/vitals.js";

/** Its replicas' health, pings and memory call for nothing: this world is about packages. */
const QUIET_VITALS = quietVitals();

const HOST = "host-a";
const T0 = 1_700_000_000_000;
const hashOf = (code: string): string => code.padEnd(64, "0").replace(/[^0-9a-f]/g, "a").slice(0, 64);
const dirOf = (hash: string): string => `/cache/packages/${hash}`;

function record(codeVersion: string, name = "app"): DeploymentRecord {
  const spec = parseDeploymentSpec({ name, import: "model.ts", runtimeEnv: { workingDir: "." } });
  return { spec, codeVersion, configVersion: "cfg", generation: 1, deployedAt: T0, runtimeEnv: { hash: hashOf(codeVersion), bytes: 100 } };
}

function assignment(id: string, codeVersion: string, change: Partial<ReplicaAssignment> = {}): ReplicaAssignment {
  return { id, deployment: "app", codeVersion, version: codeVersion, host: HOST, desired: "run", resources: { CPU: 1 }, gpuIds: [], createdAt: T0, ...change };
}

function local(runtimeEnvs: { ready?: Record<string, string>; preparing?: Record<string, PreparingReplica> } = {}, change: Partial<HostLocal> = {}): HostLocal {
  return {
    hostId: HOST,
    stopping: false,
    replicas: new Map(),
    finished: new Set(),
    prestart: { target: 0, pooled: 0, earlyExitAt: null },
    runtimeEnvs: { ready: new Map(Object.entries(runtimeEnvs.ready ?? {})), preparing: new Map(Object.entries(runtimeEnvs.preparing ?? {})) },
    ...change,
  };
}

const one = (a: ReplicaAssignment): Map<string, ReplicaAssignment> => new Map([[a.id, a]]);
const records = (rec: DeploymentRecord): Map<string, DeploymentRecord> => new Map([[rec.spec.name, rec]]);
const types = (actions: HostAction[]): string[] => actions.map((a) => a.type);

describe("planHost: runtimeEnv replicas", () => {
  const rec = record("c1");
  const hash = hashOf("c1");

  it("prepares the package of a replica whose package is not ready, and prestarts nothing meanwhile", () => {
    const prestart = { prestart: { target: 1, pooled: 0, earlyExitAt: null } };
    const actions = planHost(one(assignment("r1", "c1")), records(rec), local({}, prestart), T0);
    assert.deepEqual(types(actions), ["prepare"]);
    assert.deepEqual(planHost(one(assignment("r1", "c1")), records(rec), local({ preparing: { r1: { state: "preparing" } } }, prestart), T0), [], "one preparation at a time, no prestart");
    assert.deepEqual(types(planHost(new Map(), records(rec), local({}, prestart), T0)), ["prestart"], "prestarts once nothing is prepared");
  });

  it("starts from the prepared directory, or at once when the package is ready here", () => {
    const prepared = planHost(one(assignment("r1", "c1")), records(rec), local({ preparing: { r1: { state: "prepared", appDir: "/x/pkg" } } }), T0);
    assert.deepEqual(prepared.map((a) => (a.type === "spawn" ? [a.assignment.id, a.appDir] : a.type)), [["r1", "/x/pkg"]]);
    const ready = planHost(one(assignment("r2", "c1")), records(rec), local({ ready: { [hash]: dirOf(hash) } }), T0);
    assert.deepEqual(ready.map((a) => (a.type === "spawn" ? [a.assignment.id, a.appDir] : a.type)), [["r2", dirOf(hash)]]);
    const other = planHost(one(assignment("r3", "c1")), records(rec), local({ ready: { [hashOf("c0")]: dirOf(hashOf("c0")) } }), T0);
    assert.deepEqual(types(other), ["prepare"], "another package being ready does not help");
  });

  it("turns a failed preparation into a failed start", () => {
    assert.deepEqual(planHost(one(assignment("r1", "c1")), records(rec), local({ preparing: { r1: { state: "failed" } } }), T0), [{ type: "fail-prepare", id: "r1" }]);
  });

  it("abandons a preparation whose replica is drained, moved, removed, or whose host stops", () => {
    const preparing = { preparing: { r1: { state: "preparing" as const } } };
    assert.deepEqual(planHost(one(assignment("r1", "c1", { desired: "drain" })), records(rec), local(preparing), T0), [{ type: "abandon", id: "r1", reason: "desired" }]);
    assert.deepEqual(planHost(one(assignment("r1", "c1", { host: "host-b" })), records(rec), local(preparing), T0), [{ type: "abandon", id: "r1", reason: "unassigned" }]);
    assert.deepEqual(planHost(new Map(), records(rec), local(preparing), T0), [{ type: "abandon", id: "r1", reason: "unassigned" }]);
    assert.deepEqual(planHost(one(assignment("r1", "c1")), records(rec), local(preparing, { stopping: true }), T0), [{ type: "abandon", id: "r1", reason: "stopping" }]);
  });

  it("waits with a prepared replica while the record names other code, and starts it once it names its own", () => {
    const job = { preparing: { r1: { state: "prepared" as const, appDir: dirOf(hash) } } };
    assert.deepEqual(planHost(one(assignment("r1", "c1")), records(record("c2")), local(job), T0), []);
    assert.deepEqual(types(planHost(one(assignment("r1", "c1")), records(rec), local(job), T0)), ["spawn"]);
  });

  it("spawns replicas without runtimeEnv as before, with no app directory of their own", () => {
    const plain = { ...rec, runtimeEnv: undefined };
    delete plain.runtimeEnv;
    const actions = planHost(one(assignment("r1", "c1")), records(plain), local(), T0);
    assert.deepEqual(actions, [{ type: "spawn", assignment: assignment("r1", "c1"), record: plain }]);
  });
});

interface Job {
  hash: string;
  state: PreparingReplica["state"];
  /** Steps left until it ends. */
  left: number;
}

/** A controller that changes its mind, and a host whose preparations take a while, sometimes fail, and whose cache forgets. */
class World {
  now = T0;
  readonly records = new Map<string, DeploymentRecord>();
  readonly assignments = new Map<string, ReplicaAssignment>();
  readonly jobs = new Map<string, Job>();
  readonly procs = new Map<string, { id: string; state: "starting" | "running"; drainRequested: boolean; appDir: string }>();
  readonly finished = new Map<string, "failed" | "stopped" | "exited">();
  readonly ready = new Map<string, string>();
  readonly everSpawned = new Set<string>();
  stopping = false;
  failRate = 0.2;
  failedStarts = 0;
  private seq = 0;
  private code = 0;

  constructor(readonly rng: () => number) {
    this.deploy();
  }

  private deploy(): void {
    this.records.set("app", record(`c${++this.code}`));
  }

  local(): HostLocal {
    return {
      hostId: HOST,
      stopping: this.stopping,
      replicas: new Map([...this.procs].map(([id, p]) => [id, { id, state: p.state, configVersion: "cfg", settingsKey: "", reconfigureSent: null, drainRequested: p.drainRequested, vitals: QUIET_VITALS }])),
      finished: new Set(this.finished.keys()),
      prestart: { target: 0, pooled: 0, earlyExitAt: null },
      runtimeEnvs: {
        ready: new Map(this.ready),
        preparing: new Map([...this.jobs].map(([id, j]) => [id, { state: j.state, ...(j.state === "prepared" ? { appDir: dirOf(j.hash) } : {}) }])),
      },
    };
  }

  controllerStep(): void {
    const r = this.rng();
    const rec = this.records.get("app")!;
    const ids = [...this.assignments.keys()];
    const a = this.assignments.get(ids[Math.floor(this.rng() * ids.length)] ?? "");
    if (r < 0.25) {
      const id = `r${++this.seq}`;
      this.assignments.set(id, assignment(id, rec.codeVersion, { host: this.rng() < 0.85 ? HOST : "host-b" }));
    } else if (r < 0.35 && a) {
      this.assignments.set(a.id, { ...a, desired: "drain" });
    } else if (r < 0.4 && a) {
      this.assignments.delete(a.id);
    } else if (r < 0.45) {
      this.deploy();
    } else if (r < 0.5) {
      // Eviction: the cache no longer vouches for packages nobody uses.
      this.ready.clear();
    }
    for (const id of this.finished.keys()) if (this.rng() < 0.3) this.assignments.delete(id);
    for (const x of this.assignments.values()) {
      if (x.desired === "run" && x.codeVersion !== rec.codeVersion && this.rng() < 0.2) this.assignments.set(x.id, { ...x, desired: "drain" });
    }
  }

  hostStep(): void {
    const actions = planHost(this.assignments, this.records, this.local(), this.now);
    for (const action of actions) {
      switch (action.type) {
        case "prepare": {
          const { assignment: a, record: rec } = action;
          assert.ok(!this.jobs.has(a.id) && !this.procs.has(a.id) && !this.finished.has(a.id), `${a.id}: prepared once, and only before it starts`);
          assert.ok(rec.runtimeEnv && rec.codeVersion === a.codeVersion, `${a.id}: prepares the package of its own code`);
          this.jobs.set(a.id, { hash: rec.runtimeEnv.hash, state: "preparing", left: Math.floor(this.rng() * 4) });
          break;
        }
        case "spawn": {
          const { assignment: a, record: rec } = action;
          assert.ok(!this.stopping && !this.everSpawned.has(a.id) && !this.procs.has(a.id), `${a.id}: started once, never while stopping`);
          assert.ok(rec.runtimeEnv, `${a.id}: a runtimeEnv record`);
          assert.equal(action.appDir, dirOf(rec.runtimeEnv.hash), `${a.id}: starts from its own package's directory`);
          const job = this.jobs.get(a.id);
          assert.ok(!job || job.state === "prepared", `${a.id}: not started while its package is being prepared or failed`);
          const now = this.assignments.get(a.id);
          assert.ok(now && now.host === HOST && now.desired === "run" && now.codeVersion === rec.codeVersion, `${a.id}: started only while assigned here to run its code`);
          this.jobs.delete(a.id);
          this.everSpawned.add(a.id);
          this.procs.set(a.id, { id: a.id, state: "starting", drainRequested: false, appDir: action.appDir });
          break;
        }
        case "fail-prepare":
          assert.equal(this.jobs.get(action.id)?.state, "failed", `${action.id}: only a failed preparation fails the start`);
          this.jobs.delete(action.id);
          this.finished.set(action.id, "failed");
          this.failedStarts++;
          break;
        case "abandon": {
          assert.ok(this.jobs.has(action.id), `${action.id}: only a preparation is abandoned`);
          const a = this.assignments.get(action.id);
          assert.ok(this.stopping || !a || a.host !== HOST || a.desired === "drain", `${action.id}: abandoned only when no longer wanted here`);
          this.jobs.delete(action.id);
          this.finished.set(action.id, "stopped");
          break;
        }
        case "drain": {
          const p = this.procs.get(action.id);
          assert.ok(p && !p.drainRequested);
          p.drainRequested = true;
          break;
        }
        case "forget":
          this.finished.delete(action.id);
          break;
        case "settings":
        case "reconfigure":
        case "prestart":
          break;
      }
    }
    // Level-triggered: after one tick, no preparation goes on for a replica not wanted here.
    for (const id of this.jobs.keys()) {
      const a = this.assignments.get(id);
      assert.ok(!this.stopping && a && a.host === HOST && a.desired === "run", `${id}: preparing only while wanted here`);
    }
  }

  /** Preparations end (or fail); processes start, and exit once drained. */
  workStep(): void {
    for (const job of this.jobs.values()) {
      if (job.state !== "preparing") continue;
      if (job.left-- > 0) continue;
      if (this.rng() < this.failRate) {
        job.state = "failed";
      } else {
        job.state = "prepared";
        this.ready.set(job.hash, dirOf(job.hash));
      }
    }
    for (const p of [...this.procs.values()]) {
      if (p.drainRequested) {
        this.procs.delete(p.id);
        this.finished.set(p.id, "exited");
      } else if (p.state === "starting") {
        p.state = "running";
      }
    }
  }

  step(chaos: boolean): void {
    if (chaos) this.controllerStep();
    this.hostStep();
    this.workStep();
    this.now += 1000;
  }
}

describe("planHost: a simulated world of runtimeEnv replicas", () => {
  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
    it(`seed ${seed}: every replica starts from its own package, failures end as failed starts, and a stop leaves nothing`, () => {
      const w = new World(mulberry32(seed));
      for (let i = 0; i < 500; i++) w.step(true);
      assert.ok(w.everSpawned.size > 20, `the world did something (${w.everSpawned.size} started)`);
      assert.ok(w.failedStarts > 0, "some preparations failed");

      // Quiet, and every preparation succeeds: each replica assigned here to run its current code runs.
      w.failRate = 0;
      for (let i = 0; i < 20; i++) w.step(false);
      const current = w.records.get("app")!.codeVersion;
      for (const a of w.assignments.values()) {
        if (a.host !== HOST || a.desired !== "run" || w.finished.has(a.id) || a.codeVersion !== current) continue;
        assert.equal(w.procs.get(a.id)?.state, "running", `${a.id}: runs once quiet`);
      }
      assert.equal(w.jobs.size, 0, "no preparation left once quiet");

      w.stopping = true;
      for (let i = 0; i < 5; i++) w.step(false);
      assert.equal(w.jobs.size, 0, "a stopping host abandons every preparation");
      assert.equal(w.procs.size, 0, "and ends empty");
    });
  }
});
